#!/usr/bin/env bash
# A minimal Debian 12 root on which to run the AppImage as on a machine without GTK or WebKit:
# `debootstrap --variant=minbase` plus only the packages of the libraries the AppImage takes from
# the system (scripts/appimage-base-libs) and one font. Made once into $SAFEHOLD_TOOLS (a minute;
# Debian's mirror, as apt uses), then reused. Needs root (chroot, mounts).
#   scripts/minimal-root.sh path                  -> prints the root's folder (made if missing)
#   scripts/minimal-root.sh run IMAGE SECONDS ARGS -> runs the AppImage in the root with ARGS (at
#        most SECONDS), its X display and /proc and /dev mounted for it; unmounted after, always
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${SAFEHOLD_TOOLS:-$HOME/.cache/safehold}"
root="$tools/rootfs-bookworm"
[ "$(id -u)" = 0 ] || { echo "minimal-root: needs root (chroot and mounts)" >&2; exit 3; }

packages=(libstdc++6 libgl1 libegl1 libglx0 libopengl0 libgles2 libgbm1 libglapi-mesa libdrm2
  libx11-6 libx11-xcb1 libxcb1 libxcb-dri2-0 libxcb-dri3-0 libwayland-client0 libfontconfig1
  libfreetype6 libharfbuzz0b libfribidi0 libasound2 libice6 libsm6 zlib1g libexpat1 libuuid1
  libgpg-error0 libcom-err2 libgmp10 fonts-dejavu-core)

make_root() {
  command -v debootstrap >/dev/null || { echo "minimal-root: debootstrap is missing (scripts/deps.sh test installs it)" >&2; exit 1; }
  local mirror
  mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "minimal-root: making a minimal Debian 12 root in $root (once, about a minute)" >&2
  rm -rf "$root.partial"
  mkdir -p "$tools"
  debootstrap --variant=minbase bookworm "$root.partial" "$mirror" >/dev/null
  cp /etc/resolv.conf "$root.partial/etc/resolv.conf"
  chroot "$root.partial" apt-get update -qq
  chroot "$root.partial" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null 2> >(grep -v "invoke-rc.d" >&2)
  chroot "$root.partial" apt-get clean
  touch "$root.partial/.complete"
  mv "$root.partial" "$root"
}
[ -f "$root/.complete" ] || make_root

case "${1:-path}" in
  path) echo "$root" ;;
  run)
    image=$2 seconds=$3
    shift 3
    home=$(mktemp -d "$root/tmp/run.XXXXXX")
    inside=${home#"$root"}
    mounted=()
    cleanup() {
      for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
      rm -rf "$home"
    }
    trap cleanup EXIT
    trap 'exit 143' TERM INT
    for m in proc dev; do
      mkdir -p "$root/$m"
      if ! mountpoint -q "$root/$m"; then
        if [ "$m" = proc ]; then mount -t proc proc "$root/proc"; else mount --bind /dev "$root/dev"; fi
        mounted+=("$root/$m")
      fi
    done
    env_args=(HOME="$inside" XDG_CACHE_HOME="$inside/cache" SAFEHOLD_HOME="$inside/safehold" PATH=/usr/bin:/bin LANG=C.UTF-8)
    if [ -n "${DISPLAY:-}" ]; then
      mkdir -p "$root/tmp/.X11-unix"
      if ! mountpoint -q "$root/tmp/.X11-unix"; then mount --bind /tmp/.X11-unix "$root/tmp/.X11-unix"; mounted+=("$root/tmp/.X11-unix"); fi
      env_args+=(DISPLAY="$DISPLAY")
      if [ -n "${XAUTHORITY:-}" ] && [ -f "$XAUTHORITY" ]; then cp "$XAUTHORITY" "$home/Xauthority"; env_args+=(XAUTHORITY="$inside/Xauthority"); fi
    fi
    cp "$image" "$home/Safehold.AppImage"
    set +e
    timeout --signal=TERM --kill-after=5 "$seconds" chroot "$root" env -i "${env_args[@]}" "$inside/Safehold.AppImage" "$@"
    status=$?
    set -e
    exit "$status"
    ;;
  *) echo "minimal-root: unknown command ${1} (use path, or run IMAGE SECONDS ARGS)" >&2; exit 2 ;;
esac
