#!/usr/bin/env bash
# schat against ngIRCd+TLS, side by side in one run, through the shared peer
# harness (../shared/peer-bench, see its README): for each round, ngIRCd+TLS
# then schat (OpenSSL backend, the default; VARIANTS="openssl pycryptodome"
# adds schat with SCHAT_CRYPTO_BACKEND=pycryptodome), each scenario on a fresh
# server pinned to CPU 0, the load generator on CPU 1; after each round the
# primitives of a key login are timed on CPU 0 (bench.primitives). Then prints
# the table of ratios against ngIRCd+TLS in the same round (bench/peer_table.py).
#
#   bash bench/peer.sh                     # 2 rounds, ~15 minutes
#   ROUNDS=1 FIXED_NS=200 FLAT_NS= KEY_CONNECT_NS= NGIRCD_CONNECT_NS=1000 bash bench/peer.sh
#   ACKS="fast durable" bash bench/peer.sh # schat with --fast-acks and with --durable-acks
#   PROFILE=1 bash bench/peer.sh           # py-spy on schat at 10k deliveries/s, N=200, only
#   bash bench/peer_profile.sh SCENARIO N  # py-spy or perf on any one scenario (its header)
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
# Extra `schat serve` options per variant (ACKS below): the harness's own list plus ours.
sed -i 's/^\(SCHAT_ARGS=(.*\)$/\1\n\t${SCHAT_EXTRA_ARGS:-}/' "$WORK/run-schat.sh"
grep -q 'SCHAT_EXTRA_ARGS' "$WORK/run-schat.sh" || { echo "cannot add serve options to the harness" >&2; exit 1; }
cp "$HERE/peer_driver.py" "$WORK/schat_driver.py"
PEER=$WORK
if [ -z "${PY:-}" ]; then
	if [ -x /work/venv/bin/python ]; then PY=/work/venv/bin/python; else PY=$(command -v python3); fi
fi
export PY
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
ROUNDS=${ROUNDS:-2}
VARIANTS=${VARIANTS:-openssl}
# ACKS="fast durable": each variant twice, with `serve --fast-acks` and with
# `--durable-acks` (labelled openssl-fast, openssl-durable); empty: the default.
ACKS=${ACKS:-}
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

# Scenarios (issue #14's targets): 10k deliveries/s and flat out with 200 and
# 1,000 members; connect + key login of 1,000 clients, each leaving once
# welcomed (ngIRCd+TLS: connect and register, 1,000); 2,000 members logging in
# and staying (ngIRCd+TLS: 2,000 connect and stay), whose RSS gives the idle
# memory per connection; then the primitives a key login must run, timed on the
# server's CPU with the server's library (bench.primitives). CONNECT_SERVERS=" "
# keeps schat out of the password stay-connected runs.
FIXED=${FIXED_NS-"200 1000"}
FLAT=${FLAT_NS-"200 1000"}
common=(FANOUT_NS="$FIXED" FIXED_NS="$FIXED" FLAT_NS="$FLAT" LEAVE_CONNECT_NS= ROUNDS=1
	ACCOUNTS=${ACCOUNTS:-2200})
for round in $(seq 1 "$ROUNDS"); do
	ngircd_connect=${NGIRCD_CONNECT_NS-"1000 2000"}
	ngircd_servers=ngircd-tls
	[ -n "$ngircd_connect" ] || ngircd_servers=" "   # the harness reads "" as its default
	env "${common[@]}" ROUND_FIRST="$round" SERVERS="ngircd-tls" \
		CONNECT_SERVERS="$ngircd_servers" CONNECT_NS="${ngircd_connect:-1000}" \
		KEY_LEAVE_CONNECT_NS= KEY_CONNECT_NS= \
		OUT="$OUT" LABEL="peer-$STAMP-ngircd" bash "$PEER/run-schat.sh"
	for variant in $VARIANTS; do
		for acks in ${ACKS:-default}; do
			# The harness's list predates the per-address message rate: ten senders
			# from 127.0.0.1 flat out is the point, as with --rate-limit 0.
			name=$variant extra="--address-rate-limit 0"
			if [ "$acks" != default ]; then name=$variant-$acks extra="$extra --$acks-acks"; fi
			env "${common[@]}" ROUND_FIRST="$round" SERVERS="schat" CONNECT_SERVERS=" " OUT="$OUT" \
				KEY_LEAVE_CONNECT_NS="${KEY_LEAVE_CONNECT_NS-1000}" KEY_CONNECT_NS="${KEY_CONNECT_NS-2000}" \
				SCHAT_CRYPTO_BACKEND="$variant" SCHAT_EXTRA_ARGS="$extra" \
				LABEL="peer-$STAMP-$name" bash "$PEER/run-schat.sh"
			SCHAT_CRYPTO_BACKEND="$variant" taskset -c 0 "$PY" -m bench.primitives \
				--host-key "$SROOT/template/server/host_key.pem" --out "$OUT" \
				--label "peer-$STAMP-$name primitives r$round"
		done
	done
done
"$PY" "$HERE/peer_table.py" "$OUT" "peer-$STAMP"
