"""The box's side of fleet operations: config changes from the station, on trial, with rollback.

``local.LocalConfig`` owns the files beside the config (the previous config, the trial
record) and decides at each start what runs; ``service.ConfigService`` answers
``get_config``/``set_config`` and watches a config on trial; ``check.TrialCheck`` judges it.
"""
