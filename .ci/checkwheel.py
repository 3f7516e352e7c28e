"""
Run C{twistd -n webwire} as installed from the wheel: from a directory
outside the checkout, so that nothing of the checkout is imported. It must
find the plugin, print the version, listen, and serve the browser client
(a static file of the package) and a WebSocket upgrade. Run with the
wheel's virtualenv's python; exits non-zero on any failure.
"""

import os
import re
import subprocess
import sys
import tempfile
import urllib.request

import webwire

bindir = os.path.dirname(sys.executable)
twistd = os.path.join(bindir, "twistd")
here = tempfile.mkdtemp()
os.chdir(here)
assert "site-packages" in webwire.__file__, webwire.__file__

version = subprocess.run(
    [twistd, "webwire", "--version"], check=True, capture_output=True, text=True
).stdout.strip()
assert version == f"webwire {webwire.__version__}", version

server = subprocess.Popen(
    [twistd, "-n", "--pidfile=", "webwire", "--listen", "tcp:0:interface=127.0.0.1"],
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
)
try:
    assert server.stdout is not None
    for line in server.stdout:  # ends if twistd exits
        match = re.search(r"\bSite starting on (\d+)", line)
        if match:
            break
    else:
        raise SystemExit("twistd webwire ended without listening")
    base = f"http://127.0.0.1:{match.group(1)}"
    with urllib.request.urlopen(f"{base}/webwire.js", timeout=10) as response:
        script = response.read()
    assert response.status == 200 and b"export" in script, script[:200]
    with urllib.request.urlopen(f"{base}/", timeout=10) as response:
        assert b"<html" in response.read().lower()
finally:
    server.terminate()
    server.wait(30)
sys.stdout.write(f"{version} from the wheel: plugin, server and static files work\n")
