"""Station-side provisioning: certificates, device bundles, broker TLS and ACL, box install.

Technicians run these from the station (``roadside provision ...``) to give every box its own
identity, confine it to its own MQTT topics and take that access away again if it is stolen.
``docs/provisioning.md`` is the guide; ``install.sh`` is the on-box half.
"""
