#!/usr/bin/env bash
# schat against ngIRCd+TLS, side by side in one run, through the shared peer
# harness (../shared/peer-bench, see its README): for each round, ngIRCd+TLS,
# schat (OpenSSL backend, the default) and schat with SCHAT_CRYPTO_BACKEND=
# pycryptodome (what the record layer cost before), each on a fresh server
# pinned to CPU 0, the load generator on CPU 1. Then prints the table of
# ratios against ngIRCd+TLS in the same round (bench/peer_table.py).
#
#   bash bench/peer.sh                     # 2 rounds, ~6 minutes
#   ROUNDS=1 VARIANTS=openssl bash bench/peer.sh
#   PROFILE=1 bash bench/peer.sh           # py-spy on schat at 10k deliveries/s, N=200, only
#
# Needs: apt-get install -y ngircd openssl; a Python with schat's
# dependencies (PY, default /work/venv/bin/python or python3). This checkout
# is put on PYTHONPATH. Results: $OUT (default bench/results/peer.jsonl).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PEER=${PEER:-$(cd "$REPO/../shared/peer-bench" 2>/dev/null && pwd || echo /work/shared/peer-bench)}
[ -f "$PEER/run-schat.sh" ] || { echo "no peer harness at $PEER (set PEER=)" >&2; exit 1; }
# A copy of the harness whose schat driver signs key logins as the protocol
# now does (bench/peer_driver.py wraps the harness's own driver).
WORK=$(mktemp -d /tmp/schat-peer-harness.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cp -a "$PEER/." "$WORK/"
mv "$WORK/schat_driver.py" "$WORK/schat_driver_base.py"
cp "$HERE/peer_driver.py" "$WORK/schat_driver.py"
PEER=$WORK
if [ -z "${PY:-}" ]; then
	if [ -x /work/venv/bin/python ]; then PY=/work/venv/bin/python; else PY=$(command -v python3); fi
fi
export PY
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
ROUNDS=${ROUNDS:-2}
VARIANTS=${VARIANTS:-"openssl pycryptodome"}
STAMP=$(date +%Y%m%dT%H%M%S)
OUT=${OUT:-$HERE/results/peer.jsonl}
# Our own template home and results (the shared folder may be read-only or in use).
export SROOT=${SROOT:-/tmp/schat-peer-$(id -u)-$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo x)}
mkdir -p "$(dirname "$OUT")"

if [ -n "${PROFILE:-}" ]; then
	PROFILE_DIR=${PROFILE_DIR:-$HERE/results/profile}
	PROFILE=$PROFILE_DIR OUT=$OUT LABEL="peer-$STAMP-openssl" bash "$PEER/run-schat.sh"
	echo "speedscope profile: $PROFILE_DIR/schat-fanout200.speedscope.json" >&2
	exit 0
fi

# Scenarios: 10k deliveries/s and flat out with 200 members; connect + key
# login of 1,000 clients, each leaving once welcomed (ngIRCd+TLS: connect and
# register). CONNECT_SERVERS=" " keeps schat out of the stay-connected runs.
common=(FIXED_NS=200 FLAT_NS=200 CONNECT_NS=1000 KEY_LEAVE_CONNECT_NS=1000
	LEAVE_CONNECT_NS= KEY_CONNECT_NS= ROUNDS=1 ACCOUNTS=${ACCOUNTS:-1200})
for round in $(seq 1 "$ROUNDS"); do
	env "${common[@]}" ROUND_FIRST="$round" SERVERS="ngircd-tls" CONNECT_SERVERS=ngircd-tls \
		OUT="$OUT" LABEL="peer-$STAMP-ngircd" bash "$PEER/run-schat.sh"
	for variant in $VARIANTS; do
		env "${common[@]}" ROUND_FIRST="$round" SERVERS="schat" CONNECT_SERVERS=" " OUT="$OUT" \
			SCHAT_CRYPTO_BACKEND="$variant" LABEL="peer-$STAMP-$variant" bash "$PEER/run-schat.sh"
	done
done
"$PY" "$HERE/peer_table.py" "$OUT" "peer-$STAMP"
