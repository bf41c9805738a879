#!/bin/sh
# Before navarch-controlplane's files are unpacked (deb preinst, rpm %pre):
# the system user and group the control plane runs as, with no login
# shell and /var/lib/navarch, its state directory, as home (systemd makes
# it, from the unit's StateDirectory=). Kept as they are if they exist.
set -e
if ! getent group navarch >/dev/null; then
	groupadd --system navarch
fi
if ! getent passwd navarch >/dev/null; then
	shell=/bin/false
	for nologin in /usr/sbin/nologin /sbin/nologin; do
		if [ -x "$nologin" ]; then
			shell=$nologin
			break
		fi
	done
	useradd --system --gid navarch --home-dir /var/lib/navarch --no-create-home \
		--shell "$shell" --comment "Navarch control plane" navarch
fi
