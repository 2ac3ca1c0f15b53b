#!/bin/sh
# make bench-full: full-size SD1.5, SD2.1-base, SDXL and DiT-XL/2 on this machine, difusa against the tools a
# user would otherwise run, in one invocation, on the same threads, one process per measurement (so that each
# peak RSS is its own):
#   difusa        CPU backend (bench/full.lua), and the OpenCL backend for BENCH_OPENCL_CASES (PoCL here)
#   torch         diffusers on PyTorch, fp32 (tools/bench_torch.py; tools/.venv)
#   sdcpp         stable-diffusion.cpp's CLI on the same single-file checkpoint, f16 (build/bench/sdcpp/bin/sd,
#                 built from its public source for the benchmark only; skipped when absent)
# plus the BLAS sgemm rate (build/release/bench/sgemm_peak), which turns each UNet step's FLOPs into a bound.
# Writes $OUT/results.txt (one line per run), $OUT/logs/, and through bench/full_report.lua the table
# $OUT/bench-full.md and the plot $OUT/bench-full.png.
#
# Environment: BENCH_CASES ("model:size ..."), BENCH_TOOLS, BENCH_OPENCL_CASES, OMP_NUM_THREADS.
set -eu
OUT=${BENCH_OUT:-build/bench-full}
MODELS=${BENCH_MODELS:-build/bench-models}
THREADS=${OMP_NUM_THREADS:-$(nproc)}
CASES=${BENCH_CASES:-"sd15:256 sd15:512 sd21b:256 sd21b:512 sdxl:512 sdxl:1024 dit_xl2:256"}
TOOLS=${BENCH_TOOLS:-"difusa torch sdcpp"}
OPENCL_CASES=${BENCH_OPENCL_CASES-"sd15:256"}
IM2COL_CASES=${BENCH_IM2COL_CASES-"sd15:256 sd15:512"} # difusa again with Winograd off: the lever, measured
REPEAT=${BENCH_REPEAT:-2} # difusa and PyTorch runs per case, interleaved; the report keeps each one's best
HOST=${HOST:-build/release/difusa}
PY=tools/.venv/bin/python
SDCPP=build/bench/sdcpp/bin/sd
PROMPT="a photograph of an astronaut riding a horse on the moon, highly detailed"
export OMP_NUM_THREADS=$THREADS

mkdir -p "$OUT/logs"
: > "$OUT/results.txt"
echo "bench-full: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $THREADS threads," \
  "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); results in $OUT" >&2

# One run: tool, model, size, then the command. Appends "tool=... model=... size=... key=value ... rss_mb=..."
# (the peak RSS as /usr/bin/time saw it) to results.txt, or a line with error= when the run failed.
run() {
  tool=$1 model=$2 size=$3
  shift 3
  log="$OUT/logs/$model-$size-$tool.log"
  echo "bench-full: $tool $model ${size}x$size ..." >&2
  if /usr/bin/time -f "maxrss_kb=%M" -o "$log.rss" "$@" > "$log" 2>&1; then
    line=$(parse "$tool" "$log")
    rss=$(sed -n 's/^maxrss_kb=//p' "$log.rss")
    echo "tool=$tool model=$model size=$size $line rss_mb=$((rss / 1024))" >> "$OUT/results.txt"
    echo "  $line" >&2
  else
    echo "tool=$tool model=$model size=$size error=1" >> "$OUT/results.txt"
    echo "  failed; the last lines of $log:" >&2
    tail -n 5 "$log" >&2
  fi
}

# The key=value part of a run's log. difusa and torch print it themselves; stable-diffusion.cpp logs its
# phases ("get_learned_condition completed, taking 0.52s", "decode_first_stage completed, taking 3.1s") and
# each step's own time on a \r progress bar ("3/3 - 12.40s/it", or "it/s" under a second).
parse() {
  case $1 in
  difusa* | torch) sed -n 's/^\(difusa\|torch\) //p' "$2" | tail -n 1 ;;
  sdcpp)
    tr '\r' '\n' < "$2" | awk '
      /get_learned_condition completed, taking/ { for (i = 1; i <= NF; i++) if ($i == "taking") enc = $(i + 1) + 0 }
      /decode_first_stage completed, taking/ { for (i = 1; i <= NF; i++) if ($i == "taking") dec = $(i + 1) + 0 }
      /loading tensors completed, taking/ { for (i = 1; i <= NF; i++) if ($i == "taking") load += $(i + 1) }
      match($0, /[0-9]+\/[0-9]+ - [0-9.]+(s\/it|it\/s)/) {
        split(substr($0, RSTART, RLENGTH), f, " ")
        split(f[1], ij, "/")
        v = f[3] + 0
        if (f[3] ~ /it\/s/) v = 1 / v
        t[ij[1] + 0] = v
        n = ij[2] + 0
      }
      END {
        s = 0
        for (i = 2; i <= n; i++) s += t[i]
        printf "decode_s=%g encode_s=%g first_step_s=%g load_s=%g step_s=%g\n", dec, enc, t[1], load, (n > 1 ? s / (n - 1) : t[1])
      }' ;;
  esac
}

for b in $HOST build/release/bench/sgemm_peak; do
  test -x "$b" || { echo "bench-full: $b missing (make all bench-bin)" >&2; exit 1; }
done
build/release/bench/sgemm_peak | tee "$OUT/logs/sgemm_peak.log" | tail -n 1 | sed 's/^sgemm_peak /tool=sgemm /' >> "$OUT/results.txt"
echo "  $(tail -n 1 "$OUT/logs/sgemm_peak.log")" >&2

for c in $CASES; do
  model=${c%%:*} size=${c##*:}
  steps=3 rounds=$REPEAT
  [ "$model:$size" = sdxl:1024 ] && steps=2 rounds=1 # the issue's "one step": the first and one measured
  r=0
  while [ $r -lt "$rounds" ]; do
  r=$((r + 1))
  for tool in $TOOLS; do
    [ $r -gt 1 ] && [ "$tool" = sdcpp ] && continue # one run: it is several times slower than both
    case $model:$tool in
    dit_xl2:difusa)
      run difusa "$model" "$size" "$HOST" bench/full.lua dit "$MODELS/dit_xl2/DiT-XL-2-256.safetensors" "$size" \
        "$steps" cpu "$MODELS/sd15/vae" ;;
    dit_xl2:torch)
      run torch "$model" "$size" "$PY" tools/bench_torch.py dit "$MODELS/dit_xl2/transformer" "$size" "$steps" cpu \
        "$MODELS/sd15/vae" ;;
    dit_xl2:sdcpp) ;; # stable-diffusion.cpp has no class-conditional DiT
    *:difusa)
      run difusa "$model" "$size" "$HOST" bench/full.lua sd "$MODELS/$model.safetensors" "$size" "$steps" cpu
      case " $OPENCL_CASES " in *" $c "*)
        [ $r -eq 1 ] && run difusa-opencl "$model" "$size" "$HOST" bench/full.lua sd "$MODELS/$model.safetensors" \
          "$size" "$steps" opencl ;;
      esac
      case " $IM2COL_CASES " in *" $c "*)
        run difusa-im2col "$model" "$size" env DIFUSA_CONV=im2col "$HOST" bench/full.lua sd \
          "$MODELS/$model.safetensors" "$size" "$steps" cpu ;;
      esac ;;
    *:torch)
      run torch "$model" "$size" "$PY" tools/bench_torch.py sd "$MODELS/$model" "$size" "$steps" cpu ;;
    *:sdcpp)
      if [ -x "$SDCPP" ]; then
        run sdcpp "$model" "$size" "$SDCPP" -m "$MODELS/$model.safetensors" -p "$PROMPT" -n "" -W "$size" -H "$size" \
          --steps "$steps" --cfg-scale 7.5 --sampling-method euler --scheduler discrete -s 1 -t "$THREADS" \
          --type f16 -o "$OUT/logs/$model-$size-sdcpp.png"
      else
        echo "bench-full: no $SDCPP, stable-diffusion.cpp skipped (see the README's performance section)" >&2
      fi ;;
    esac
  done
  done
done

"$HOST" bench/full_report.lua "$OUT/results.txt" "$OUT/bench-full.md" "$OUT/bench-full.dat"
if command -v gnuplot > /dev/null; then
  gnuplot -e "datafile='$OUT/bench-full.dat'; outfile='$OUT/bench-full.png'" bench/full.gp
  echo "bench-full: wrote $OUT/bench-full.md and $OUT/bench-full.png" >&2
else
  echo "bench-full: wrote $OUT/bench-full.md (no gnuplot: apt-get install gnuplot-nox for the plot)" >&2
fi
