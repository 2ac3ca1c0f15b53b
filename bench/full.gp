# make bench-full's plot: each tool's UNet step (CFG) as a multiple of the FLOP / sgemm bound, per model and
# size (1 = every FLOP at the BLAS rate). gnuplot -e "datafile='...'; outfile='...'" bench/full.gp
set terminal pngcairo size 1000,540 font "sans,11" noenhanced
set output outfile
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set ylabel "UNet step time / FLOP bound"
set yrange [0:*]
set grid ytics
set key below horizontal
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb "#444444"
set title "UNet step with CFG (batch 2), 2-core CPU: lower is better, 1 = the sgemm bound"
plot datafile using 2:xtic(1) title "difusa (CPU)" lc rgb "#2b6cb0", \
     "" using 3 title "PyTorch fp32 (diffusers)" lc rgb "#dd6b20", \
     "" using 4 title "stable-diffusion.cpp f16" lc rgb "#718096"
