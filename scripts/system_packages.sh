#!/bin/sh
# The system packages the check uses, installed when missing and possible:
# bubblewrap, the coding agent's bash sandbox (RELIABILITY H5; its tests need it).
# Without apt-get (or the right to use it) this says so and the check goes on:
# the bwrap tests then skip and the coding agent's bash asks before each command.
command -v bwrap >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1; then
  run=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then run="sudo -n"; fi
  export DEBIAN_FRONTEND=noninteractive
  $run apt-get install -y -q bubblewrap >/dev/null 2>&1 \
    || { $run apt-get update -q >/dev/null 2>&1 && $run apt-get install -y -q bubblewrap >/dev/null 2>&1; }
fi
if command -v bwrap >/dev/null 2>&1; then
  echo "installed bubblewrap ($(bwrap --version))"
else
  echo "note: bubblewrap could not be installed; the sandbox tests will be skipped" >&2
fi
exit 0
