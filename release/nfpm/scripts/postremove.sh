#!/bin/sh
# After a daemon's package is removed or purged (deb postrm, rpm %postun):
# a running systemd forgets its unit. The state directory and the navarch
# user stay: a reinstall finds the fleet, its CA and the node identities
# as they were.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
