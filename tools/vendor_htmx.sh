#!/usr/bin/env bash
# Re-fetch the duty console's vendored front-end files from the npm registry and check them.
#
#   bash tools/vendor_htmx.sh          # download with `npm pack`, copy, verify sha256
#   bash tools/vendor_htmx.sh --check  # only verify the committed copies
#
# The console is server-rendered (Jinja2) and uses htmx for partial loading; htmx is the only
# third-party front-end file and it is committed, so the hub needs no network or node at run
# time (live updates use the browser's own EventSource, actions its fetch).
# Bumping a version: change it below, run this script, put the sha256 it prints here and in
# docs/console.md.
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DEST=hub/console/static/vendor

# package@version  file-in-tarball  vendored-name  sha256-of-file
FILES=(
    "htmx.org@2.0.11 package/dist/htmx.min.js htmx.min.js d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
)

check() {
    local rc=0 spec inner name sha
    for entry in "${FILES[@]}"; do
        read -r spec inner name sha <<<"$entry"
        local got
        got=$(sha256sum "$DEST/$name" | cut -d' ' -f1)
        if [[ $got == "$sha" ]]; then
            echo "ok  $name  $spec  $got"
        else
            echo "BAD $name  $spec  expected $sha got $got" >&2
            rc=1
        fi
    done
    return "$rc"
}

if [[ ${1:-} == --check ]]; then check; exit; fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$DEST"
for entry in "${FILES[@]}"; do
    read -r spec inner name _sha <<<"$entry"
    tarball=$(cd "$tmp" && npm pack --silent "$spec")
    tar -xzf "$tmp/$tarball" -C "$tmp" "$inner"
    cp "$tmp/$inner" "$DEST/$name"
    rm -rf "$tmp/package"
    echo "$spec -> $DEST/$name  sha256 $(sha256sum "$DEST/$name" | cut -d' ' -f1)"
done
check
