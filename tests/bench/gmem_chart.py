#!/usr/bin/env python3
#
# make bench's chart: conversions per second against chunk size (bare,
# legacy, manager, manager-async) and against vCPUs (the scaling row),
# from the JSON gmem_bench.py saves, drawn by gnuplot as one PNG.
#
#   gmem_chart.py RESULTS.json OUT.png
#
# SPDX-License-Identifier: GPL-2.0-or-later

import json
import subprocess
import sys

SERIES = (('bare', 'bare KVM calls (vCPU)'), ('legacy', 'QEMU 10.2.2 path'),
          ('manager', 'manager, discard=sync'),
          ('async', 'manager, discard=async'))
# One colour per series in both panels.
COLOUR = {'bare': '#555555', 'legacy': '#d62728', 'manager': '#1f77b4',
          'async': '#2ca02c'}


def series(key, title):
    return ("'-' using 1:2 with linespoints lw 2 lc rgb '%s' title '%s'"
            % (COLOUR[key], title))


def block(points):
    return ''.join('%s %s\n' % p for p in points) + 'e\n'


def main(src, out):
    with open(src) as f:
        r = json.load(f)
    plots, data = [], ''
    for key, title in SERIES:
        if key in r:
            pts = sorted((int(k), v) for k, v in r[key].items())
            plots.append(series(key, title))
            data += block(pts)
    scale_plots, scale_data = [], ''
    for key, title in SERIES[1:]:
        k = 'scaling-' + key
        if k in r:
            pts = sorted((int(c), v) for c, v in r[k].items())
            scale_plots.append(series(key, title))
            scale_data += block(pts)
    if not plots and not scale_plots:
        print('chart: not drawn, %s holds neither row 1 nor row 8' % src)
        return 0
    script = ['set terminal pngcairo size 1200,480 font "sans,10"',
              "set output '%s'" % out,
              'set multiplot layout 1,2',
              'set grid', 'set key top right',
              'set ylabel "conversions per second"']
    if plots:
        script += ['set title "private/shared conversions by chunk size '
                   '(nested rig, 1 vCPU)"',
                   'set logscale x 2', 'set logscale y',
                   'set xlabel "chunk (bytes)"',
                   'set xtics ("4 KiB" 4096, "64 KiB" 65536, '
                   '"2 MiB" 2097152)',
                   'plot ' + ', '.join(plots), data.rstrip('\n')]
    if scale_plots:
        script += ['unset logscale', 'set xtics 1', 'set yrange [0:*]',
                   'set key top left',
                   'set title "4 KiB conversions, vCPUs converting at once"',
                   'set xlabel "vCPUs"',
                   'plot ' + ', '.join(scale_plots), scale_data.rstrip('\n')]
    script.append('unset multiplot')
    # Inline data ('-') follows each plot command that reads it.
    subprocess.run(['gnuplot'], input='\n'.join(script) + '\n', text=True,
                   check=True)
    print('chart: %s' % out)
    return 0


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]))
