#!/bin/sh
# sync_failures.sh - a group sharing one model (train --sync-topic,
# docs/SYNC_PROTOCOL.md "Failures") through the failures issue 13 names,
# against `streamlr broker` (its SIGUSR1/SIGUSR2 outages).  One part per
# test, so that each stays short: SYNC_FAILURES_PARTS=z (sync_zombie.test),
# o (sync_outage.test), u (sync_unavailable.test); zou runs all three.
#   reference: one process learns the 8 partitions (no failure);
#   z. a zombie: 3 members; partition 7 is held back so that the group waits
#      at a round whose other deltas are all on the sync topic; one member is
#      SIGSTOPped past session.timeout.ms, the others take its partitions and
#      publish the same slices again (repeats every reader must drop), the
#      rest of partition 7 is produced, the group goes on, the zombie is
#      SIGCONTed and rejoins; then the members are stopped and restarted from
#      their checkpoints with --exit-at-end to finish;
#   o. the brokers go down mid-run and come back: the group stalls, says why,
#      and goes on; a scorer (predict --follow-topic, rows on a pipe) keeps
#      scoring through the outage with the model it has and says the sync
#      topic is unreachable;
#   u. the sync topic missing at the start (refused, saying what to do), then
#      its partition without a leader (--outage-topic): the group pauses,
#      says so, and goes on when the leader is back.
# After each, every member's model must be the reference's bit for bit
# (export, %.17g), its step count the examples produced, its ledger every
# offset once, and the group's committed offsets the partitions' ends.
set -eu
bin=${STREAMLR:-$(pwd)/tools/streamlr}
work=$(mktemp -d "${TMPDIR:-/tmp}/streamlr-sync-failures-XXXXXX")
broker=
cleanup() { # every process this test started, by its id
    for p in $(cat "$work/pids" 2> /dev/null) $broker; do kill -9 "$p" 2> /dev/null || true; done
    if [ -n "${SYNC_FAILURES_KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap "exit 1" INT TERM
fail() { echo "FAIL: $*"; exit 1; }
parts=${SYNC_FAILURES_PARTS:?give SYNC_FAILURES_PARTS: z, o, u or several}

S=20
start_broker() { # name [options]
    name=$1
    shift
    rm -f "$work/bootstrap"
    "$bin" broker --topic clicks:8 --topic "$name.model:1" "$@" \
        --bootstrap-file "$work/bootstrap" > "$work/broker.out" 2> "$work/$name.broker.err" &
    broker=$!
    for i in $(seq 100); do
        [ -s "$work/bootstrap" ] && break
        sleep 0.1
    done
    [ -s "$work/bootstrap" ] || { cat "$work/$name.broker.err"; fail "the broker did not start"; }
    bs=$(cat "$work/bootstrap")
}
stop_broker() {
    kill "$broker"
    wait "$broker" || true
    broker=
}

# 8 partitions filled unevenly (66 to 533 examples: 4 to 27 rounds), as in
# sync_group.test
"$bin" synth -n 2400 --format vw --seed 11 -o "$work/all.vw" 2> /dev/null
awk -v dir="$work" '{ k = NR % 36; p = 0; c = 1; while (k >= c) { p++; c += p + 1 }
                      print > (dir "/p" p ".vw") }' "$work/all.vw"
total=$(wc -l < "$work/all.vw")
expect="merged          "
sep=""
for p in 0 1 2 3 4 5 6 7; do
    expect="$expect$sep clicks[$p] [0, $(wc -l < "$work/p$p.vw"))"
    sep=","
done
produce() { # partition file
    "$bin" produce --brokers "$bs" --topic clicks --partition "$1" --format vw --quiet "$2"
}
produce_all() {
    for p in 0 1 2 3 4 5 6 7; do produce "$p" "$work/p$p.vw"; done
}

# the process is the member (exec), so that its id is the member's; the
# test kills and waits for it by that id, and bounds every wait itself
run_member() { # group checkpoint-dir model log [options]
    g=$1 d=$2 m=$3 l=$4
    shift 4
    exec "$bin" train --brokers "$bs" --topic clicks --group "$g" --sync-topic "$g.model" \
        --sync-every "$S" -X fetch.wait.max.ms=10 -X session.timeout.ms=6000 -b 18 \
        --checkpoint-dir "$d" --checkpoint-every 1 --quiet -f "$m" "$@" >> "$l" 2>&1
}
start_member() { # group i [options]
    g=$1 i=$2
    shift 2
    run_member "$g" "$work/$g$i.ck" "$work/$g$i.model" "$work/$g$i.log" "$@" &
    eval "pid_$g$i=$!"
    echo $! >> "$work/pids"
}
pid_of() { eval "echo \$pid_$1"; }
alive() { kill -0 "$1" 2> /dev/null; }
# wait for the processes to end by themselves, at most $1 s
wait_ended() { # seconds pid...
    t=$1
    shift
    for s in $(seq "$((t * 5))"); do
        running=
        for p in "$@"; do alive "$p" && running=1; done
        [ -z "$running" ] && return 0
        sleep 0.2
    done
    return 1
}
# the round a member's newest checkpoint holds (0: none yet)
member_round() { # group i
    c=$(ls "$work/$1$2.ck"/ckpt-*.slr 2> /dev/null | tail -n 1)
    r=
    [ -n "$c" ] && r=$("$bin" inspect "$c" 2> /dev/null |
        sed -n 's/^sync .*model after \([0-9]*\) rounds.*/\1/p')
    echo "${r:-0}"
}
group_round() { # group members...
    g=$1 best=0
    shift
    for i in "$@"; do
        r=$(member_round "$g" "$i")
        [ "$r" -gt "$best" ] && best=$r
    done
    echo "$best"
}
wait_round() { # seconds round group members...: until one holds the round
    t=$1 want=$2
    shift 2
    for s in $(seq "$((t * 5))"); do
        [ "$(group_round "$@")" -ge "$want" ] && return 0
        dead "$@" && return 1
        sleep 0.2
    done
    return 1
}
dead() { # group members...: one of them ended (a failure: say which, with its log)
    g=$1
    shift
    for i in "$@"; do
        alive "$(pid_of "$g$i")" && continue
        echo "member $g$i ended:"
        tail -n 5 "$work/$g$i.log"
        return 0
    done
    return 1
}

# the model of a finished member: the reference's weights, every example once
check_model() { # model what
    "$bin" export "$1" > "$1.txt"
    "$bin" inspect "$1" > "$1.inspect"
    grep -q "^examples learned $total\b" "$1.inspect" ||
        { cat "$1.inspect"; fail "$2: the model's step count is not the $total examples produced"; }
    grep "^merged " "$1.inspect" > "$1.merged" || { cat "$1.inspect"; fail "$2: no ledger"; }
    [ "$(cat "$1.merged")" = "$expect" ] ||
        { cat "$1.merged"; echo "$expect"; fail "$2: the ledger does not cover every offset once"; }
    cmp -s "$work/ref.model.txt" "$1.txt" || fail "$2: weights differ from the one-process reference"
}
# the group's committed offsets are the partitions' ends: a consumer of the
# group without checkpoints starts there
check_committed() { # group
    "$bin" train --brokers "$bs" --topic clicks --group "$1" -X fetch.wait.max.ms=10 \
        -X session.timeout.ms=6000 --exit-at-end -b 18 --quiet > "$work/$1.lag" 2>&1
    for p in 0 1 2 3 4 5 6 7; do
        grep -q "clicks\[$p\]@$(wc -l < "$work/p$p.vw") (committed)" "$work/$1.lag" ||
            { cat "$work/$1.lag"; fail "$1: partition $p not committed at its end"; }
    done
}

# the members end by themselves (--exit-at-end) with the reference's model,
# and the group's offsets are committed at the ends
finish_group() { # group members...
    g=$1
    shift
    pids=
    for i in "$@"; do pids="$pids $(pid_of "$g$i")"; done
    # shellcheck disable=SC2086
    wait_ended 120 $pids || fail "$g: members still running after 120 s"
    for i in "$@"; do
        wait "$(pid_of "$g$i")" || { cat "$work/$g$i.log"; fail "$g: member $i failed"; }
        check_model "$work/$g$i.model" "$g: member $i"
    done
    check_committed "$g"
}

# the reference: one process, no failure (its broker is the first part's)
start_broker ref
produce_all
start_member ref 0 --exit-at-end
wait_ended 120 "$(pid_of ref0)" || fail "the reference run did not end in 120 s"
wait "$(pid_of ref0)" || { cat "$work/ref0.log"; fail "the reference run failed"; }
"$bin" export "$work/ref0.model" > "$work/ref.model.txt"
[ "$(wc -l < "$work/ref.model.txt")" -gt 1000 ] || fail "the reference model is nearly empty"
"$bin" inspect "$work/ref0.model" | grep -q "^examples learned $total\b" ||
    fail "the reference did not learn the $total examples"
echo "reference: one process, $total examples in 8 partitions, rounds of $S"
stop_broker

# z. a zombie.  Partition 7 gets only its first r0 slices at first, so the
# group stops at round r0 with every other partition's delta of round r0 on
# the sync topic; a member without partition 7 is stopped there (SIGSTOP),
# past session.timeout.ms: the two others take its partitions and learn
# their slices of round r0 again -- the same deltas, behind the zombie's on
# the topic, which every reader must drop.  Then partition 7's rest is
# produced, the group goes on to the round where partition 0 runs short,
# the zombie is resumed (SIGCONT), and all three are stopped (SIGTERM) and
# restarted from their checkpoints with --exit-at-end to finish.
if case $parts in *z*) true ;; *) false ;; esac; then
    start_broker z
    r0=2
    for p in 0 1 2 3 4 5 6; do produce "$p" "$work/p$p.vw"; done
    head -n $((r0 * S)) "$work/p7.vw" > "$work/p7.head"
    tail -n +$((r0 * S + 1)) "$work/p7.vw" > "$work/p7.tail"
    produce 7 "$work/p7.head"
    for i in 1 2 3; do start_member z "$i"; done
    for i in 1 2 3; do
        wait_round 60 "$r0" z "$i" || { cat "$work/z$i.log"; fail "z: member $i did not reach round $r0 in 60 s"; }
    done
    sleep 2 # the round-r0 deltas of what they hold are out (published as soon as learned)
    zombie=
    for i in 1 2 3; do
        grep "assigned" "$work/z$i.log" | tail -n 1 | grep -q "clicks\[7\]" || zombie=$i
    done
    [ -n "$zombie" ] || fail "z: every member holds partition 7"
    held=$(grep "assigned" "$work/z$zombie.log" | tail -n 1 | grep -o "clicks\[[0-9]\]" | tr '\n' ' ')
    [ "$(group_round z 1 2 3)" -eq "$r0" ] || fail "z: the group went past round $r0 without partition 7"
    kill -STOP "$(pid_of z$zombie)"
    echo "z: member $zombie (holding $held) stopped at round $r0"
    others=$(echo 1 2 3 | tr ' ' '\n' | grep -vx "$zombie" | tr '\n' ' ')
    # past session.timeout.ms, the others hold all 8 partitions
    for t in $(seq 150); do
        n=0
        for i in $others; do
            n=$((n + $(grep "assigned" "$work/z$i.log" | tail -n 1 | grep -o "clicks\[[0-9]\]" | wc -l)))
        done
        [ "$n" -eq 8 ] && break
        dead z $others && break
        sleep 0.2
    done
    [ "$n" -eq 8 ] || fail "z: the other members did not take the zombie's partitions in 30 s"
    sleep 2 # they learn the zombie's slices of round r0 again and publish them
    produce 7 "$work/p7.tail"
    # the group goes on without the zombie, to where partition 0 runs short
    rend=$(( $(wc -l < "$work/p0.vw") / S ))
    wait_round 60 "$rend" z $others || fail "z: the group did not go on to round $rend without the zombie"
    kill -CONT "$(pid_of z$zombie)"
    echo "z: the group went on to round $rend; member $zombie resumed"
    # it finds itself out of the group, catches up with the rounds merged
    # meanwhile and joins again, at round rend (its positions rend*S)
    for t in $(seq 300); do
        grep "assigned" "$work/z$zombie.log" | tail -n 1 | grep -q "@$((rend * S)) " && break
        sleep 0.2
    done
    grep "assigned" "$work/z$zombie.log" | tail -n 1 | grep -q "@$((rend * S)) " ||
        { cat "$work/z$zombie.log"; fail "z: the zombie did not rejoin the group at round $rend in 60 s"; }
    for i in 1 2 3; do
        alive "$(pid_of z$i)" || { cat "$work/z$i.log"; fail "z: member $i ended"; }
    done
    # every reader dropped the repeats of the zombie's slices of round r0
    for i in 1 2 3; do kill -TERM "$(pid_of z$i)"; done
    for i in 1 2 3; do
        wait "$(pid_of z$i)" || { cat "$work/z$i.log"; fail "z: member $i did not stop cleanly on SIGTERM"; }
        grep "repeats dropped" "$work/z$i.log" | tail -n 1 > "$work/z$i.repeats"
        grep -q "repeats dropped: [1-9][0-9]* identical, 0 different" "$work/z$i.repeats" ||
            { cat "$work/z$i.log"; fail "z: member $i dropped no repeat of the zombie's slices"; }
    done
    echo "z: $(cat "$work/z1.repeats" | sed 's/.*repeats dropped: //') (member 1)"
    for i in 1 2 3; do
        echo "--- restarted with --exit-at-end" >> "$work/z$i.log"
        start_member z "$i" --exit-at-end
    done
    finish_group z 1 2 3
    echo "z: a zombie past session.timeout.ms: the reference's weights bit for bit, every offset once, offsets committed"
    stop_broker
fi

# o. the brokers down mid-run and back
if case $parts in *o*) true ;; *) false ;; esac; then
    start_broker o
    produce_all
    for i in 1 2 3; do start_member o "$i" --exit-at-end; done
    wait_round 60 1 o 1 2 3 || fail "o: the group merged no round in 60 s"
    # a scorer following the group, fed rows on a pipe as they come
    mkfifo "$work/rows"
    "$bin" predict --brokers "$bs" --follow-topic o.model --data - -p "$work/o.pred" \
        < "$work/rows" 2> "$work/o.scorer.log" &
    scorer=$!
    echo "$scorer" >> "$work/pids"
    exec 3> "$work/rows"
    trap '' PIPE # a scorer that ended is said below, with its log, not a silent SIGPIPE
    feed() { # first last: rows to the scorer
        alive "$scorer" && head -n "$2" "$work/all.vw" | tail -n "+$1" >&3 ||
            { wait "$scorer"; echo "exit $?"; cat "$work/o.scorer.log"; fail "o: the scorer ended"; }
    }
    feed 1 100
    # the outage comes once the scorer scores with a model of the group's
    # (a scorer opened during an outage waits for the topic instead)
    for s in $(seq 300); do
        grep -q "scoring with sync:o.model@" "$work/o.scorer.log" && break
        alive "$scorer" || break
        sleep 0.2
    done
    grep -q "scoring with sync:o.model@" "$work/o.scorer.log" ||
        { cat "$work/o.scorer.log"; fail "o: the scorer had no model after 60 s"; }
    wait_round 60 3 o 1 2 3 || fail "o: the group did not reach round 3 in 60 s"
    kill -USR1 "$broker"
    sleep 1
    at=$(group_round o 1 2 3)
    [ "$at" -lt 22 ] || fail "o: the group had nearly ended when the brokers went down (round $at)"
    echo "o: brokers down at round $at"
    feed 101 200
    sleep 9
    now=$(group_round o 1 2 3)
    [ "$now" -le "$((at + 1))" ] || fail "o: the group went on from round $at to $now with the brokers down"
    for i in 1 2 3; do
        alive "$(pid_of o$i)" || { cat "$work/o$i.log"; fail "o: member $i ended during the outage"; }
    done
    kill -USR2 "$broker"
    echo "o: brokers up again after 10 s"
    feed 201 300
    exec 3>&-
    finish_group o 1 2 3
    for i in 1 2 3; do
        grep -q "sync topic o.model unreachable (.*); learning is paused with the model at round" \
            "$work/o$i.log" || { cat "$work/o$i.log"; fail "o: member $i did not say the sync topic was unreachable"; }
        grep -q "sync topic o.model reachable again after" "$work/o$i.log" ||
            { cat "$work/o$i.log"; fail "o: member $i did not say the sync topic was back"; }
    done
    echo "o: the group paused at round $at while down, said why, went on: the reference's weights bit for bit, every offset once, offsets committed"
    wait "$scorer" || { cat "$work/o.scorer.log"; fail "o: the scorer failed"; }
    [ "$(wc -l < "$work/o.pred")" -eq 300 ] || { cat "$work/o.scorer.log"; fail "o: the scorer did not score the 300 rows"; }
    grep -q "sync topic o.model unreachable.*; still scoring with sync:o.model@" "$work/o.scorer.log" ||
        { cat "$work/o.scorer.log"; fail "o: the scorer did not say the sync topic was unreachable"; }
    echo "o: the scorer scored every row through the outage and said: $(grep -o "sync topic o.model unreachable.*" "$work/o.scorer.log" | head -n 1)"
    stop_broker
fi

# u. the sync topic unavailable: missing at the start (refused, saying what
# to do), then its partition without a leader mid-run (the group pauses,
# says so, and goes on when the leader is back)
if case $parts in *u*) true ;; *) false ;; esac; then
    start_broker u --outage-topic u.model
    produce_all
    status=0
    "$bin" train --brokers "$bs" --topic clicks --group u --sync-topic no.such.model \
        -X session.timeout.ms=6000 --exit-at-end -b 18 --quiet > "$work/u.missing" 2>&1 || status=$?
    # (the mock creates a topic on first use, with 4 partitions, whatever the
    # client asks; a real cluster answers "unknown topic" to the reader,
    # which asks for no creation: "create it with one partition ...")
    [ "$status" -ne 0 ] && grep -q "sync topic no.such.model has 4 partitions; it needs exactly one.*create it with --partitions 1 before the group starts" "$work/u.missing" ||
        { cat "$work/u.missing"; fail "u: a missing sync topic was not refused with what to do ($status)"; }
    echo "u: a missing sync topic: $(grep -o "sync topic no.such.model.*" "$work/u.missing" | head -n 1)"
    for i in 1 2; do start_member u "$i" --exit-at-end; done
    wait_round 60 3 u 1 2 || fail "u: the group did not reach round 3 in 60 s"
    kill -USR1 "$broker"
    sleep 1
    at=$(group_round u 1 2)
    [ "$at" -lt 22 ] || fail "u: the group had nearly ended when the sync topic lost its leader (round $at)"
    echo "u: the sync topic without a leader at round $at"
    sleep 8
    now=$(group_round u 1 2)
    [ "$now" -le "$((at + 1))" ] || fail "u: the group went on from round $at to $now without the sync topic"
    for i in 1 2; do
        alive "$(pid_of u$i)" || { cat "$work/u$i.log"; fail "u: member $i ended while the sync topic had no leader"; }
        grep -q "sync topic u.model unreachable (.*); learning is paused" "$work/u$i.log" ||
            { cat "$work/u$i.log"; fail "u: member $i did not say the sync topic was unreachable"; }
    done
    kill -USR2 "$broker"
    finish_group u 1 2
    for i in 1 2; do
        grep -q "sync topic u.model reachable again after" "$work/u$i.log" ||
            { cat "$work/u$i.log"; fail "u: member $i did not say the sync topic was back"; }
    done
    echo "u: paused $(grep -ho "unreachable ([^)]*)" "$work/u1.log" | head -n 1) and went on: the reference's weights bit for bit, every offset once, offsets committed"
    stop_broker
fi
