#!/bin/sh
# Install the desktop entry and the icon for the current user (Linux, freedesktop.org icon theme).
#   packaging/install-desktop.sh [PREFIX]      PREFIX defaults to ~/.local/share
set -eu
here=$(cd "$(dirname "$0")" && pwd)
icons="$here/../resources/icons"
prefix=${1:-${XDG_DATA_HOME:-$HOME/.local/share}}
for size in 16 32 48 64 128 256; do
    install -Dm644 "$icons/cxrview-$size.png" "$prefix/icons/hicolor/${size}x${size}/apps/cxrview.png"
done
install -Dm644 "$icons/cxrview.svg" "$prefix/icons/hicolor/scalable/apps/cxrview.svg"
install -Dm644 "$here/cxrview.desktop" "$prefix/applications/cxrview.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$prefix/applications" || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$prefix/icons/hicolor" || true
echo "installed cxrview.desktop and its icon under $prefix"
