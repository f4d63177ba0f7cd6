#!/usr/bin/env bash
# Makes a Docker engine, the Compose v2 plugin and a debian:bookworm-slim base image available on a Debian/Ubuntu
# machine, for `STACK=docker make up` and CI on a fresh machine. Idempotent: each step checks before it acts.
#   1. engine: `docker info` answers, else install docker.io (apt) and start dockerd (systemd, or nohup without it:
#      log $STATE_DIR/logs/dockerd.log, pid file $STATE_DIR/run/dockerd.pid)
#   2. compose: `docker compose version` works, else build Compose from its Go module (Go >= 1.24) into
#      ${DOCKER_CONFIG:-~/.docker}/cli-plugins/docker-compose (the build is cached under $STATE_DIR/docker/)
#   3. base image: `docker pull debian:bookworm-slim`, else build it with debootstrap from the machine's apt mirror
#      (Docker Hub may be unreachable) and `docker import` it
# `scripts/docker_engine.sh --check` only reports what is missing: exit 0 if everything is there, 1 otherwise.
# Exit 2: the machine needs a manual step (not Debian/Ubuntu, no suitable Go); the message says which.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${STATE_DIR:-.state}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)  # absolute: dockerd and debootstrap run elsewhere
COMPOSE_VERSION=${COMPOSE_VERSION:-v2.40.3}
BASE_IMAGE=debian:bookworm-slim
PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"

log() { printf '[docker] %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root for: $*"; exit 1; fi
}

engine_answers() { command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1; }
compose_works() { command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; }
image_present() { docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; }

step_start=0
begin() { step_start=$(date +%s); log "$*"; }
done_in() { log "$1 ($(( $(date +%s) - step_start )) s)"; }

if [ "${1:-}" = --check ]; then
  missing=()
  if engine_answers; then
    log "engine: answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
  elif command -v dockerd >/dev/null 2>&1; then
    missing+=("engine (dockerd is installed but not answering)")
  else
    missing+=("engine (dockerd not installed)")
  fi
  if compose_works; then log "compose: $(docker compose version --short 2>/dev/null)"; else missing+=(compose); fi
  if engine_answers && image_present; then log "base image: $BASE_IMAGE present"; else missing+=("$BASE_IMAGE"); fi
  if [ ${#missing[@]} -eq 0 ]; then log "everything is there"; exit 0; fi
  for item in "${missing[@]}"; do log "missing: $item"; done
  exit 1
elif [ $# -gt 0 ]; then
  echo "usage: $0 [--check]" >&2
  exit 2
fi

# --- 1. engine -------------------------------------------------------------------------------------------------------
start_dockerd() {
  local logfile="$STATE/logs/dockerd.log" pidfile="$STATE/run/dockerd.pid" pid waited=0
  if [ -d /run/systemd/system ]; then
    log "starting the docker service (systemctl start docker)"
    as_root systemctl start docker
    logfile="journalctl -u docker"
  elif pgrep -x dockerd >/dev/null 2>&1; then
    log "dockerd is already running (pid $(pgrep -x dockerd | head -1)); waiting for it to answer"
  else
    mkdir -p "$STATE/logs" "$STATE/run"
    rm -f "$pidfile"  # stale from a daemon that is gone; the new one writes it once it runs
    log "no systemd: starting dockerd in the background (log $logfile, pid file $pidfile)"
    # setsid: the daemon outlives the make/CI job that starts it; it is left running for the next commands.
    as_root setsid nohup dockerd --pidfile "$pidfile" >>"$logfile" 2>&1 </dev/null &
  fi
  until timeout 10 docker info >/dev/null 2>&1; do
    if [ "$waited" -ge 60 ]; then
      log "dockerd did not answer \`docker info\` within 60 s; its log: ${logfile} (last lines below)"
      tail -n 20 "$logfile" 2>/dev/null | sed 's/^/[docker]   /' || true
      exit 1
    fi
    if [ -f "$pidfile" ] && pid=$(cat "$pidfile" 2>/dev/null) && [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      log "dockerd (pid $pid) exited; its log: ${logfile} (last lines below)"
      tail -n 20 "$logfile" | sed 's/^/[docker]   /'
      exit 1
    fi
    sleep 2
    waited=$((waited + 2))
    [ $((waited % 10)) -ne 0 ] || log "waiting for dockerd to answer... ${waited} s"
  done
}

begin "step 1/3: Docker engine"
if engine_answers; then
  done_in "engine answers \`docker info\`: nothing to do"
else
  if ! command -v dockerd >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
      log "dockerd is not installed and this is not a Debian/Ubuntu machine (no apt-get)."
      log "Install Docker Engine by hand: https://docs.docker.com/engine/install/ then run this script again."
      exit 2
    fi
    log "installing docker.io with apt-get (dockerd, containerd, runc; an existing docker CLI earlier in PATH stays)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
  fi
  log "dockerd: $(command -v dockerd) ($(dockerd --version 2>/dev/null)); CLI: $(command -v docker) ($(docker --version))"
  start_dockerd
  done_in "engine answers: server $(docker version --format '{{.Server.Version}}')"
fi

# --- 2. compose plugin -----------------------------------------------------------------------------------------------
go_is_recent() {
  command -v go >/dev/null 2>&1 || return 1
  local v major minor
  v=$(go env GOVERSION 2>/dev/null) || return 1  # go1.26.8
  v=${v#go}
  major=${v%%.*}
  minor=${v#*.}
  minor=${minor%%[!0-9]*}
  [[ $major =~ ^[0-9]+$ && $minor =~ ^[0-9]+$ ]] || return 1
  [ "$major" -gt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -ge 24 ]; }
}

install_plugin() {
  mkdir -p "$PLUGIN_DIR"
  install -m 0755 "$1" "$PLUGIN_DIR/docker-compose"
  log "installed $PLUGIN_DIR/docker-compose"
}

begin "step 2/3: Compose v2 plugin"
if compose_works; then
  done_in "\`docker compose version\` works ($(docker compose version --short)): nothing to do"
else
  built="$STATE/docker/docker-compose-$COMPOSE_VERSION"
  if [ -x "$built" ]; then
    log "reusing the Compose $COMPOSE_VERSION built before ($built)"
  elif go_is_recent; then
    src="$STATE/docker/compose-src"
    mkdir -p "$STATE/docker"
    log "downloading the Go module github.com/docker/compose/v2@$COMPOSE_VERSION ($(go env GOVERSION))"
    # Outside any module (the state dir), so the repository's files play no part.
    json=$(cd "$STATE/docker" && GOFLAGS=-mod=mod go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION") || {
      log "go mod download failed:"; printf '%s\n' "$json" | sed 's/^/[docker]   /'; exit 1; }
    moddir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir":[[:space:]]*"\([^"]*\)".*/\1/p' | head -1)
    [ -n "$moddir" ] && [ -d "$moddir" ] || { log "no module folder in go's answer: $json"; exit 1; }
    rm -rf "$src"
    mkdir -p "$src"
    cp -R "$moddir/." "$src/"
    chmod -R u+w "$src"
    # `go install module@version` refuses the module's exclude directives; building in a copy of it does not.
    log "building Compose in $src (go build ./cmd, about 4 min on 2 CPUs; log $STATE/docker/compose-build.log)"
    build_start=$(date +%s)
    (cd "$src" && CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" go build -trimpath \
      -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
      -o "$built.tmp" ./cmd) >"$STATE/docker/compose-build.log" 2>&1 || {
      log "go build failed; its log: $STATE/docker/compose-build.log (last lines below)"
      tail -n 15 "$STATE/docker/compose-build.log" | sed 's/^/[docker]   /'
      exit 1
    }
    mv "$built.tmp" "$built"
    log "built $built in $(( $(date +%s) - build_start )) s"
    rm -rf "$src"
  else
    log "the Compose v2 plugin is missing and there is no Go >= 1.24 to build it."
    log "Install it by hand: https://docs.docker.com/compose/install/linux/ (Debian/Ubuntu: Docker's apt repository,"
    log "package docker-compose-plugin), then run this script again."
    exit 2
  fi
  install_plugin "$built"
  compose_works || { log "\`docker compose version\` still fails after installing the plugin"; exit 1; }
  done_in "compose: $(docker compose version --short)"
fi

# --- 3. base image ---------------------------------------------------------------------------------------------------
# The URI of the first enabled `deb` source that serves suite $1 with component main (deb822 *.sources and one-line
# *.list files alike).
apt_mirror_for() {
  local suite=$1 f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk -v want="$suite" '
      function flush() {
        if (!found && types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " want " ") && (" " comps " ") ~ / main / \
            && enabled != "no" && uris != "") { split(uris, a, " "); print a[1]; found = 1 }
        types = uris = suites = comps = enabled = ""
      }
      /^[[:space:]]*#/ { next }
      /^[[:space:]]*$/ { flush(); next }
      /^[A-Za-z-]+:/ { key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, ""); val = $0
        if (key == "types") types = val; else if (key == "uris") uris = val; else if (key == "suites") suites = val
        else if (key == "components") comps = val; else if (key == "enabled") enabled = tolower(val) }
      END { flush() }' "$f")
    [ -z "$uri" ] || { echo "${uri%/}"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk -v want="$suite" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) != want) next; for (j = i + 2; j <= NF; j++) if ($j == "main") { print $i; exit } }' "$f")
    [ -z "$uri" ] || { echo "${uri%/}"; return; }
  done
}

# unmount_under: unmount what debootstrap left mounted in the rootfs (proc, sys, bound /dev nodes after a failure);
# remove_rootfs: then delete it without crossing into another file system.
unmount_under() {
  local root=$1 mnt
  while read -r mnt; do
    as_root umount -l "$mnt" 2>/dev/null || true
  done < <(awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r)
  if awk -v r="$root/" 'index($2, r) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    log "something is still mounted under $root; not touching it"; exit 1
  fi
}

remove_rootfs() {
  [ -e "$1" ] || return 0
  unmount_under "$1"
  as_root rm -rf --one-file-system "$1"
}

build_base_image() {
  local rootfs="$STATE/docker/rootfs-bookworm" mirror security include=""
  mirror=$(apt_mirror_for bookworm)
  mirror=${mirror:-http://deb.debian.org/debian}
  security=$(apt_mirror_for bookworm-security)
  security=${security:-http://deb.debian.org/debian-security}
  command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || {
    log "installing debootstrap with apt-get"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  }
  # An HTTPS mirror: apt inside the image needs CA certificates (the machine's own extra CAs too, e.g. a proxy's).
  case "$mirror $security" in *https://*) include=--include=ca-certificates ;; esac
  [ ! -e "$rootfs" ] || { log "removing a partial rootfs from an earlier run"; remove_rootfs "$rootfs"; }
  mkdir -p "$STATE/docker"
  log "debootstrap --variant=minbase bookworm from $mirror into $rootfs (a minute or two)"
  if ! as_root debootstrap --variant=minbase $include bookworm "$rootfs" "$mirror" >"$STATE/docker/debootstrap.log" 2>&1
  then
    log "debootstrap failed; its log: $STATE/docker/debootstrap.log (last lines below)"
    tail -n 15 "$STATE/docker/debootstrap.log" | sed 's/^/[docker]   /'
    remove_rootfs "$rootfs"
    exit 1
  fi
  unmount_under "$rootfs"
  if [ -n "$include" ] && [ -d /usr/local/share/ca-certificates ]; then
    log "adding the machine's extra CA certificates (/usr/local/share/ca-certificates) to the image"
    as_root cp -R /usr/local/share/ca-certificates/. "$rootfs/usr/local/share/ca-certificates/"
    as_root chroot "$rootfs" update-ca-certificates >/dev/null
  fi
  # apt sources: debootstrap writes only `bookworm main`; later builds need updates and security (rustc-web).
  local list="$rootfs/etc/apt/sources.list"
  grep -qE "^deb [^ ]+ bookworm( |$)" "$list" 2>/dev/null || echo "deb $mirror bookworm main" | as_root tee -a "$list" >/dev/null
  grep -qE "^deb [^ ]+ bookworm-updates( |$)" "$list" || echo "deb $mirror bookworm-updates main" | as_root tee -a "$list" >/dev/null
  grep -qE "^deb [^ ]+ bookworm-security( |$)" "$list" || echo "deb $security bookworm-security main" | as_root tee -a "$list" >/dev/null
  log "image apt sources: $(grep -E '^deb ' "$list" | tr '\n' ';' | sed 's/;$//; s/;/; /g')"
  # The official image's container settings: no service starts during apt installs, no cached .debs or package
  # lists, no translations, and "slim" (no docs, man pages or locales).
  as_root sh -eu -c '
    r=$1
    printf "#!/bin/sh\nexit 101\n" > "$r/usr/sbin/policy-rc.d"; chmod 755 "$r/usr/sbin/policy-rc.d"
    cat > "$r/etc/apt/apt.conf.d/docker-clean" <<"EOF"
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo "Acquire::Languages \"none\";" > "$r/etc/apt/apt.conf.d/docker-no-languages"
    echo "Apt::AutoRemove::SuggestsImportant \"false\";" > "$r/etc/apt/apt.conf.d/docker-autoremove-suggests"
    cat > "$r/etc/dpkg/dpkg.cfg.d/docker" <<"EOF"
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
    find "$r/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
    find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
    rm -rf "$r/usr/share/info/"* "$r/usr/share/locale/"* "$r/usr/share/man/"* "$r/usr/share/lintian/overrides/"*
    rm -rf "$r/var/cache/apt/"*.bin "$r/var/cache/apt/archives/"*.deb "$r/var/lib/apt/lists/"* "$r/var/log/"*.log \
      "$r/var/cache/debconf/"*-old "$r/var/lib/dpkg/"*-old "$r/dev/"* "$r/run/"* "$r/tmp/"* "$r/root/".bash_history
    rm -f "$r/etc/hostname"; : > "$r/etc/resolv.conf"; : > "$r/etc/machine-id"
  ' sh "$rootfs"
  log "importing the rootfs as $BASE_IMAGE"
  as_root tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -m "debootstrap --variant=minbase bookworm $mirror" - "$BASE_IMAGE" >/dev/null
  remove_rootfs "$rootfs"
  log "image built from $mirror; rootfs deleted"
}

begin "step 3/3: base image $BASE_IMAGE"
if image_present; then
  done_in "$BASE_IMAGE is present: nothing to do"
else
  log "pulling $BASE_IMAGE (60 s at most)"
  if pull_out=$(timeout 60 docker pull "$BASE_IMAGE" 2>&1); then
    done_in "pulled $BASE_IMAGE"
  else
    log "docker pull failed (Docker Hub unreachable?): $(printf '%s' "$pull_out" | tail -n 1)"
    build_base_image
    done_in "built $BASE_IMAGE with debootstrap"
  fi
fi

# --- summary ---------------------------------------------------------------------------------------------------------
size=$(docker image inspect -f '{{.Size}}' "$BASE_IMAGE")
log "ready: engine $(docker version --format '{{.Server.Version}}'), compose $(docker compose version --short)," \
  "$BASE_IMAGE $(docker image inspect -f '{{.Id}}' "$BASE_IMAGE" | cut -c1-19) ($((size / 1024 / 1024)) MB)"
