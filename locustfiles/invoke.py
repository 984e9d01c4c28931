r"""Locust on a stable invoke URL, every request version-tagged and recorded.

    locust -f locustfiles/invoke.py --host http://127.0.0.1:8080/ \
        --probes-method POST --probes-path /chat/completions --probes-body-file body.json

Everything (the ``--probes-*`` options, recording, the Versions tab, load shapes) lives in
``probes.locustglue.glue``, whose ``_OPTIONS`` table lists the options (Locust prints
``--help`` before loading a locustfile, so its help does not show them). The token is read
from the variable named by ``--probes-token-env`` (default DATAROBOT_API_TOKEN).
"""

from probes.locustglue.glue import InvokeUser

__all__ = ["InvokeUser"]
