"""Makes the tests import this checkout's ``shuyu_client`` (installed or not).

Imported first by every test module; not a test itself.
"""

import os
import sys
from pathlib import Path

# Quiet gRPC core's own logging of the handshake failures some tests provoke.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

CLIENT_ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = CLIENT_ROOT / "tests"

for p in (str(CLIENT_ROOT), str(TESTS_DIR)):
    if p not in sys.path:
        sys.path.insert(0, p)
