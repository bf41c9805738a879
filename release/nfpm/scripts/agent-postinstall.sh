#!/bin/sh
# After navarch-agent's files are in place (deb postinst, rpm
# %post): a running systemd reads the unit again, and after an upgrade a
# running daemon is restarted on the new binary. Nothing is enabled or
# started: the operator configures it first, then runs systemctl enable
# --now.
set -e
unit=navarch-agent.service
[ -d /run/systemd/system ] || exit 0
systemctl daemon-reload || true
# deb: "configure" with the version it replaces; rpm: the number of
# versions installed once this one is.
case "$1" in
configure) upgrade=${2:+yes} ;;
[0-9]*) [ "$1" -ge 2 ] && upgrade=yes ;;
esac
if [ "${upgrade:-}" = yes ]; then
	systemctl try-restart "$unit" || true
fi
