#!/usr/bin/env bash
# Install Debian's redis-server, redis-sentinel and redis-tools (Redis 7 with
# TLS) when no TLS-capable redis-server is there yet. Used by `make redis-apt`
# before `make test-topologies` (tests/topologies needs TLS and ACLs, sentinels,
# and redis-cli to create a Redis Cluster).
#
# Idempotent and quiet: it does nothing when a redis-server with TLS support,
# redis-sentinel and redis-cli are already installed. The packages' system
# service is not wanted (the tests start their own servers on 127.0.0.1): if
# installing started it, it is stopped and disabled again.
set -euo pipefail

# Does the redis-server binary $1 know the tls-* directives? A build without
# TLS rejects them while reading its arguments ("Bad directive"); a build with
# TLS gets past them and exits because it is told to listen nowhere.
supports_tls() {
    local binary=$1 dir output
    [ -x "$binary" ] || return 1
    dir=$(mktemp -d)
    output=$(timeout 10 "$binary" --port 0 --tls-port 0 --save '' --appendonly no \
        --daemonize no --dir "$dir" --logfile '' 2>&1 || true)
    rm -rf "$dir"
    case $output in
        *"Bad directive"* | *"not supported"* | *"FATAL CONFIG"*) return 1 ;;
    esac
    return 0
}

tls_server() {
    local binary
    for binary in $(type -ap redis-server 2>/dev/null) /usr/bin/redis-server /usr/local/bin/redis-server; do
        if supports_tls "$binary"; then
            echo "$binary"
            return 0
        fi
    done
    return 1
}

if server=$(tls_server) && command -v redis-sentinel >/dev/null && command -v redis-cli >/dev/null; then
    echo "redis-apt: $server supports TLS; nothing to install"
    exit 0
fi

if ! command -v apt-get >/dev/null; then
    echo "redis-apt: no TLS-capable redis-server and no apt-get: install Redis 6.2+ built with TLS (BUILD_TLS=yes) by hand" >&2
    exit 1
fi
sudo=
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "redis-apt: run as root or install sudo" >&2; exit 1; }
    sudo=sudo
fi

# Services already running before the install are left alone.
service_running() {
    service "$1" status >/dev/null 2>&1
}
was_running=()
for unit in redis-server redis-sentinel; do
    if service_running "$unit"; then was_running+=("$unit"); fi
done

export DEBIAN_FRONTEND=noninteractive
echo "redis-apt: installing redis-server redis-sentinel redis-tools with apt-get"
# Quiet, but show apt's output when it fails.
if ! output=$($sudo apt-get update -qq 2>&1 \
    && $sudo apt-get install -y -qq --no-install-recommends \
        redis-server redis-sentinel redis-tools 2>&1); then
    echo "$output" >&2
    echo "redis-apt: apt-get failed" >&2
    exit 1
fi

for unit in redis-server redis-sentinel; do
    case " ${was_running[*]-} " in *" $unit "*) continue ;; esac
    if service_running "$unit"; then
        echo "redis-apt: stopping the $unit service that the package started"
        $sudo service "$unit" stop >/dev/null 2>&1 || true
    fi
    if [ -d /run/systemd/system ]; then
        $sudo systemctl disable --quiet "$unit" >/dev/null 2>&1 || true
    fi
done

if server=$(tls_server); then
    echo "redis-apt: $server supports TLS ($("$server" --version | cut -d' ' -f3))"
else
    echo "redis-apt: installed, but no redis-server with TLS support was found" >&2
    exit 1
fi
