"""Fleet operations from the station: ``roadside fleet`` (``cli.py``): each box's config
(desired and reported), its software (signed releases, rollouts), and the status of both.
"""
