#!/bin/sh
# Replays every committed fuzz input (fuzz/corpus/<target>: the seeds and each crash's input, kept as a
# regression) through its target, built without libFuzzer (BUILD, default build/release). A crash, a
# sanitizer report or a non-zero exit fails the target. Ends with "fuzz_replay: N passed, N failed".
build=${BUILD:-build/release}
passed=0; failed=0
for t in safetensors image prompt config plugin_desc; do
    if out=$("$build/fuzz/replay_$t" "fuzz/corpus/$t" 2>&1); then
        passed=$((passed + 1)); echo "[PASS] fuzz_replay::$t ($out)"
    else
        failed=$((failed + 1)); echo "[FAIL] fuzz_replay::$t: $(printf '%s\n' "$out" | tail -n 5)"
    fi
done
echo "fuzz_replay: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
