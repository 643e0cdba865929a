#!/usr/bin/env bash
# One peer-harness scenario against schat with py-spy attached to the server:
# where the server's CPU goes in that scenario (bench/profile_summary.py reads
# the result). Same server command, pinning and load generator as bench/peer.sh.
#
#   bash bench/peer_profile.sh connect-key-leave        # 1,000 key logins, each closing once welcomed
#   bash bench/peer_profile.sh connect-key 2000         # 2,000 key logins that stay
#   bash bench/peer_profile.sh fixed 200                # 10,000 deliveries/s, 200 members
#   bash bench/peer_profile.sh flat 1000                # flat out, 1,000 members
#   NOPROF=1 bash bench/peer_profile.sh fixed 200       # the same without py-spy (its line only)
#   THREADS=1 NOPROF=1 bash bench/peer_profile.sh fixed 200   # + CPU per thread (bench/thread_cpu.py)
#
# Writes bench/results/profile/<scenario>-<n>.speedscope.json and prints the
# load generator's JSON line and the summary of the server's threads.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SCENARIO=${1:?scenario: connect-key-leave, connect-key, connect-leave, fixed or flat}
N=${2:-}
PEER=${PEER:-/work/shared/peer-bench}
[ -f "$PEER/run-schat.sh" ] || { echo "no peer harness at $PEER (set PEER=)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/schat-peer-profile.XXXXXX)
SERVER_PID=""
PROF_PID=""
cleanup() {
	[ -n "$PROF_PID" ] && kill "$PROF_PID" 2>/dev/null || true
	if [ -n "$SERVER_PID" ]; then
		kill "$SERVER_PID" 2>/dev/null || true
		for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$SERVER_PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
cp -a "$PEER/." "$WORK/"
mv "$WORK/schat_driver.py" "$WORK/schat_driver_base.py"
cp "$HERE/peer_driver.py" "$WORK/schat_driver.py"
if [ -z "${PY:-}" ]; then
	if [ -x /work/venv/bin/python ]; then PY=/work/venv/bin/python; else PY=$(command -v python3); fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export SCHAT_SCRYPT_N=1024
SROOT=${SROOT:-/tmp/schat-peer-$(id -u)-$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo x)}
mkdir -p "$SROOT"
if [ ! -s "$SROOT/fingerprint" ] || [ ! -f "$SROOT/template/server/users.db" ]; then
	"$PY" "$WORK/prep_schat_home.py" "$SROOT/template" "${ACCOUNTS:-2200}" b >"$SROOT/fingerprint"
fi
KEYOPTS=(--opt login=key --opt "keyfile=$SROOT/template/bench-user.pem")
case "$SCENARIO" in
	connect-key-leave) N=${N:-1000}; ARGS=(connect -n "$N" --conn-window 8 --opt leave=1 "${KEYOPTS[@]}") ;;
	connect-key) N=${N:-2000}; ARGS=(connect -n "$N" --conn-window 8 "${KEYOPTS[@]}") ;;
	connect-leave) N=${N:-1000}; ARGS=(connect -n "$N" --conn-window 8 --opt leave=1) ;;
	fixed) N=${N:-200}; declare -A R=([200]=50 [1000]=10)
		ARGS=(fanout -n "$N" -s 10 -m "${M:-$((${R[$N]} * 2))}" --rate "${R[$N]}" --size 100) ;;
	flat) N=${N:-200}; declare -A MM=([200]=2000 [1000]=400)
		ARGS=(fanout -n "$N" -s 10 -m "${MM[$N]}" --rate 0 --window 50 --size 100) ;;
	*) echo "unknown scenario $SCENARIO" >&2; exit 2 ;;
esac
OUTDIR=${PROFILE_DIR:-$HERE/results/profile}
mkdir -p "$OUTDIR"
rm -rf "$WORK/home"
cp -a "$SROOT/template" "$WORK/home"
taskset -c 0 "$PY" -m schat --home "$WORK/home" serve --host 127.0.0.1 --port "${PORT:-17011}" \
	--no-signup --rate-limit 0 --address-rate-limit 0 --max-unauthenticated 20000 --max-unauthenticated-per-ip 20000 \
	${SERVE_ARGS:-} >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 150); do
	"$PY" -c "import socket; socket.create_connection(('127.0.0.1', ${PORT:-17011}), 0.5).close()" 2>/dev/null && break
	sleep 0.1
done
PROFILE_OUT="$OUTDIR/$SCENARIO-$N.speedscope.json"
THREADS_OUT="$OUTDIR/$SCENARIO-$N.threads.jsonl"
if [ -n "${THREADS:-}" ]; then
	rm -f "$THREADS_OUT"
	"$PY" "$HERE/thread_cpu.py" sample "$SERVER_PID" "$THREADS_OUT" &
fi
LOADGEN_START=$("$PY" -c "import time; print(time.monotonic())")
# PROF_DELAY: seconds to wait before sampling (skip the set-up: logins of the
# fan-out's members); PROF_SECONDS: how long to sample (default: until the end).
if [ -n "${PERF:-}" ]; then
	( sleep "${PROF_DELAY:-0}"; exec perf record -F "${RATE:-999}" -g -p "$SERVER_PID" \
		-o "$OUTDIR/$SCENARIO-$N.perf.data" ${PROF_SECONDS:+-- sleep "$PROF_SECONDS"} ) >"$WORK/perf.log" 2>&1 &
	PROF_PID=$!
elif [ -z "${NOPROF:-}" ]; then
	( sleep "${PROF_DELAY:-0}"
	  "$(dirname "$PY")/py-spy" record -p "$SERVER_PID" -r "${RATE:-200}" --nonblocking \
		${GIL:+--gil} ${NATIVE:+--native} ${PROF_SECONDS:+-d "$PROF_SECONDS"} \
		-o "$PROFILE_OUT" --format speedscope >"$OUTDIR/pyspy.log" 2>&1 &
	  echo $! >"$WORK/pyspy.pid"; wait ) &
	PROF_PID=$!
fi
timeout 300 taskset -c 1 "$PY" "$WORK/loadgen.py" "${ARGS[@]}" --port "${PORT:-17011}" \
	--driver "$WORK/schat_driver.py:SchatDriver" --opt "fingerprint=$(head -1 "$SROOT/fingerprint")" \
	--server-pid "$SERVER_PID" --cpu 1 --label "profile $SCENARIO $N" \
	--out "$OUTDIR/profiled-runs.jsonl" --max-seconds 150 || echo "# load generator exited with $?" >&2
tail -1 "$OUTDIR/profiled-runs.jsonl"
if [ -n "${THREADS:-}" ]; then
	# The measured phase, approximately (±0.5 s): after the generator's set-up, for its duration.
	tail -1 "$OUTDIR/profiled-runs.jsonl" | "$PY" -c "
import json, subprocess, sys
d = json.loads(sys.stdin.read())
start = $LOADGEN_START + d['setup_s'] + 0.2
print(subprocess.run([sys.executable, '$HERE/thread_cpu.py', 'summary', '$THREADS_OUT', '--start', str(start),
                      '--end', str(start + d['duration_s']), '--deliveries', str(d.get('received') or 0)],
                     capture_output=True, text=True).stdout)" || true
fi
if [ -n "${DUMP:-}" ]; then  # where the server is now (it still runs)
	"$(dirname "$PY")/py-spy" dump -p "$SERVER_PID" --locals >"$OUTDIR/dump.txt" 2>&1 || true
fi
if [ -n "$PROF_PID" ]; then
	if [ -s "$WORK/pyspy.pid" ]; then kill -INT "$(cat "$WORK/pyspy.pid")" 2>/dev/null || true
	else kill -INT "$PROF_PID" 2>/dev/null || true; fi
	wait "$PROF_PID" 2>/dev/null || true
	PROF_PID=""
	if [ -n "${PERF:-}" ]; then
		perf report -i "$OUTDIR/$SCENARIO-$N.perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -v "^#" | grep -v "^$" | head -20
	else
		"$PY" "$HERE/profile_summary.py" "$PROFILE_OUT" --top "${TOP:-40}"
	fi
fi
cp "$WORK/server.log" "$OUTDIR/server.log" 2>/dev/null || true
grep -E -c "WARNING|ERROR|Traceback" "$WORK/server.log" | sed 's/^/# server log warning\/error lines: /' >&2 || true
