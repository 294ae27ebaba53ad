"""``python -m cld_submission [--port N] [--host H]``: the one process entry point, ``cld serve submission`` itself
(settings read once from the environment, a configuration error reported as one line, then uvicorn until
SIGINT/SIGTERM)."""

import sys

from cld_cli.main import app

if __name__ == "__main__":  # pragma: no cover
    app(["serve", "submission", *sys.argv[1:]], prog_name="python -m cld_submission")
