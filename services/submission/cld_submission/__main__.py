"""``python -m cld_submission``: run the submission service (settings from the environment)."""

from cld_submission.service import run

if __name__ == "__main__":  # pragma: no cover
    run()
