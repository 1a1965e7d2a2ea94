"""Keep secrets out of the server's access log.

Emailed links carry one-time codes in their query strings (/verify?verificationcode=…,
/reset-password?token=…); uvicorn's access log would print them. This filter logs the
path only.
"""

from __future__ import annotations

import copy
import logging


class DropQueryStrings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(args, tuple)
            and len(args) >= 3
            and isinstance(args[2], str)
            and "?" in args[2]
        ):
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?…", *args[3:])
        return True


def uvicorn_log_config() -> dict:
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["drop_query_strings"] = {"()": DropQueryStrings}
    config["handlers"]["access"].setdefault("filters", []).append("drop_query_strings")
    return config
