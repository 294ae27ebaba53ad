#!/usr/bin/env bash
# Fetch the Compose Specification JSON schema for offline validation of compose.yaml.
#
#   bash deploy/compose/fetch-compose-schema.sh     prints the schema's path on stdout
#
# The schema is not committed (third-party file). It comes from a package registry: the npm
# package `dclint` (a Docker Compose linter, MIT) ships the compose-spec schema as
# schemas/compose.schema.json. Fallback when npm is missing: the PyPI wheel of docker-compose
# 1.29.2 ships an older copy as compose/config/compose_spec.json (fetched with pip download).
# Cached under <repo>/.cache/compose-spec/; idempotent; messages go to stderr.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)

NPM_PACKAGE="dclint@3.1.0"
NPM_MEMBER="package/schemas/compose.schema.json"
PYPI_PACKAGE="docker-compose==1.29.2"
PYPI_MEMBER="compose/config/compose_spec.json"

CACHE_DIR=$(realpath -m -- "${COMPOSE_SCHEMA_CACHE:-$REPO/.cache/compose-spec}")
SCHEMA="$CACHE_DIR/compose-spec.json"
SOURCE_FILE="$CACHE_DIR/source.txt"

log() { printf 'fetch-compose-schema.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ -s $SCHEMA && -s $SOURCE_FILE ]]; then
  printf '%s\n' "$SCHEMA"
  exit 0
fi

mkdir -p -- "$CACHE_DIR"
tmp=$(mktemp -d -- "$CACHE_DIR/tmp.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT

fetched=""
if command -v npm >/dev/null 2>&1; then
  log "fetching $NPM_PACKAGE from the npm registry ..."
  # npm pack checks the tarball against the registry's integrity hash.
  if tarball=$(cd -- "$tmp" && npm pack --silent "$NPM_PACKAGE" 2>"$tmp/npm.log" | tail -n 1) &&
    [[ -n $tarball && -f $tmp/$tarball ]] &&
    tar -xzf "$tmp/$tarball" -C "$tmp" -- "$NPM_MEMBER" 2>>"$tmp/npm.log"; then
    mv -f -- "$tmp/$NPM_MEMBER" "$tmp/schema.json"
    fetched="npm $NPM_PACKAGE $NPM_MEMBER"
  else
    cat -- "$tmp/npm.log" >&2 || true
    log "npm fetch failed; trying PyPI"
  fi
fi
if [[ -z $fetched ]]; then
  pip_cmd=()
  for py in python3 python3.11; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -m pip --version >/dev/null 2>&1; then
      pip_cmd=("$py" -m pip)
      break
    fi
  done
  ((${#pip_cmd[@]})) || die "neither npm nor pip is available to fetch the compose-spec schema"
  log "fetching $PYPI_PACKAGE from PyPI ..."
  "${pip_cmd[@]}" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$tmp" "$PYPI_PACKAGE" >&2 || die "pip download $PYPI_PACKAGE failed"
  wheel=$(find "$tmp" -maxdepth 1 -name 'docker_compose-*.whl' | head -n 1)
  [[ -n $wheel ]] || die "no docker_compose wheel downloaded"
  unzip -p -- "$wheel" "$PYPI_MEMBER" >"$tmp/schema.json" 2>/dev/null ||
    python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
      "$wheel" "$PYPI_MEMBER" >"$tmp/schema.json" || die "$PYPI_MEMBER not found in $wheel"
  fetched="pypi $PYPI_PACKAGE $PYPI_MEMBER"
fi

python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); assert "services" in s["properties"]' \
  "$tmp/schema.json" || die "the fetched file is not a compose-spec schema"
mv -f -- "$tmp/schema.json" "$SCHEMA"
printf '%s\n' "$fetched" >"$SOURCE_FILE"
log "schema from $fetched in $SCHEMA"
printf '%s\n' "$SCHEMA"
