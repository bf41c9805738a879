#!/bin/sh
# Installs and starts the Navarch agent on a freshly launched instance:
# cloud-init writes this script and /etc/navarch/agent.yaml, then runs
#
#   install-agent.sh URL SHA256 [--no-tls-verify]
#
# It downloads the agent's .deb from URL, retrying a failed download a
# bounded number of times, refuses to install it unless its SHA-256 is
# SHA256, installs it with apt-get (so its dependencies resolve) keeping
# the agent.yaml already written, and enables and starts the agent.
# --no-tls-verify is for a package the control plane serves itself: its
# certificate is signed by its own CA, which the instance does not trust
# yet, and the SHA-256 is what vouches for the file. Nothing here sees
# the join token; nothing here prints the URL's query, which may hold a
# presigned credential.
set -eu

say() { echo "navarch bootstrap: $*" >&2; }

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	say "usage: install-agent.sh URL SHA256 [--no-tls-verify]"
	exit 2
fi
url=$1
want=$2
insecure=
if [ $# -eq 3 ]; then
	if [ "$3" != --no-tls-verify ]; then
		say "unknown option $3"
		exit 2
	fi
	insecure=yes
fi
shown=${url%%\?*}
attempts=10

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
deb=$dir/navarch-agent.deb

fetch() {
	if command -v curl >/dev/null 2>&1; then
		# HTTP/1.1: the control plane serves the package on its gRPC
		# port to clients that do not offer HTTP/2.
		curl -fsSL --http1.1 --connect-timeout 10 --max-time 600 ${insecure:+--insecure} -o "$deb" "$url"
	elif command -v wget >/dev/null 2>&1; then
		wget -q --timeout=30 ${insecure:+--no-check-certificate} -O "$deb" "$url"
	else
		say "neither curl nor wget is installed to download the agent"
		exit 1
	fi
}

attempt=1
until fetch; do
	if [ "$attempt" -ge "$attempts" ]; then
		say "could not download $shown after $attempts attempts"
		exit 1
	fi
	say "download of $shown failed (attempt $attempt of $attempts); retrying"
	sleep $((attempt * 2))
	attempt=$((attempt + 1))
done

got=$(sha256sum "$deb")
got=${got%% *}
if [ "$got" != "$want" ]; then
	say "refusing to install $shown: its SHA-256 is $got, not $want"
	exit 1
fi
say "downloaded $shown; SHA-256 $got as expected"

# The package ships its own agent.yaml as a conffile; the one cloud-init
# wrote is kept (--force-confold). Without lists yet, apt-get may not find
# a dependency: read them once and try again.
install() {
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$deb"
}
if ! install; then
	say "installing the agent failed; updating the package lists and trying again"
	DEBIAN_FRONTEND=noninteractive apt-get update -q
	install
fi
systemctl enable --now navarch-agent
say "navarch-agent installed and started"
