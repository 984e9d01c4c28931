"""Locust on a stable invoke URL, every request version-tagged and recorded.

    locust -f locustfiles/invoke.py --host http://127.0.0.1:8080/ \
        --probes-method POST --probes-path /chat/completions --probes-body-file body.json

Everything (options ``--probes-*``, recording, the Versions tab, shapes) lives in
``probes.locustglue.glue``; the token is read from the variable named by
``--probes-token-env`` (default DATAROBOT_API_TOKEN). ``locust -f locustfiles/invoke.py
--help`` lists the options.
"""

from probes.locustglue.glue import InvokeUser

__all__ = ["InvokeUser"]
