"""MMAction2's entry point name; the work is done by ``featx.cli``."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from featx.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
