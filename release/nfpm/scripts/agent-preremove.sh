#!/bin/sh
# Before navarch-agent is removed, but not before an upgrade (deb prerm
# "remove", rpm %preun with 0 versions left): stop and disable the daemon,
# so no unit is left enabled without its binary.
set -e
unit=navarch-agent.service
case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac
command -v systemctl >/dev/null || exit 0
if [ -d /run/systemd/system ]; then
	systemctl stop "$unit" || true
fi
systemctl disable "$unit" >/dev/null 2>&1 || true
