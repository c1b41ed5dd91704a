"""Map the design card's top-level folders onto the ``roadside`` namespace."""

from setuptools import find_packages, setup

ROOTS = {
    "roadside": "roadside",
    "roadside.agent": "agent",
    "roadside.models": "models",
    "roadside.central": "central",
    "roadside.provisioning": "provisioning",
}

packages: list[str] = []
for name, path in ROOTS.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(path)]

setup(packages=packages, package_dir=ROOTS)
