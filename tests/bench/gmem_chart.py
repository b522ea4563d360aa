#!/usr/bin/env python3
#
# make bench's chart: conversions per second against chunk size (bare,
# legacy, manager, manager-async) and against vCPUs (the scaling row),
# and rows 11-13 against guest size (log-log), from the JSON
# gmem_bench.py saves, drawn by gnuplot as one PNG.
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


# Rows 11-13 against guest size: (JSON row, series key, title, colour,
# dash type); one panel per row.
SCALE = (
    ('scale-startup', 'start-up to the first guest line (s)', (
        ('plain', 'plain VM (no guest_memfd)', '#555555', 1),
        ('legacy', 'sw-protected, shared, legacy', '#d62728', 1),
        ('manager', 'sw-protected, shared, manager', '#1f77b4', 1),
        ('manager-private', 'sw-protected, private at start, manager',
         '#1f77b4', 2))),
    ('scale-accept', 'accept: seconds per GiB accepted', (
        ('legacy-2MiB', 'legacy, 2 MiB steps', '#d62728', 1),
        ('manager-2MiB', 'manager, 2 MiB steps', '#1f77b4', 1),
        ('legacy-4KiB', 'legacy, 4 KiB steps', '#d62728', 2),
        ('manager-4KiB', 'manager, 4 KiB steps', '#1f77b4', 2))),
    ('scale-frag', 'fragmented 1 GiB: ms per operation (manager)', (
        ('manager-frag-4k-us', 'one 4 KiB conversion', '#1f77b4', 1),
        ('manager-frag-2m-over-us', 'one 2 MiB conversion over them',
         '#2ca02c', 1),
        ('manager-frag-query-ms', 'query-guest-memfd', '#9467bd', 1),
        ('manager-frag-ranges-ms', 'query-guest-memfd ranges=true',
         '#8c564b', 1),
        ('manager-frag-slot-ms', 'memslot change (PAM0 twice)', '#ff7f0e',
         1),
        ('manager-frag-reset-ms', 'system_reset', '#d62728', 1),
        ('manager-flat-reset-ms', 'system_reset, unfragmented', '#d62728',
         2))),
)


def scale_panel(r, key, title, series_list):
    plots, data = [], ''
    for skey, stitle, colour, dt in series_list:
        if skey not in r.get(key, {}):
            continue
        # Microseconds shown as ms, so one axis holds the panel.
        k = 1e-3 if skey.endswith('-us') else 1
        pts = sorted((int(g), v * k) for g, v in r[key][skey].items())
        plots.append("'-' using 1:2 with linespoints lw 2 dt %d lc rgb '%s' "
                     "title '%s'" % (dt, colour, stitle))
        data += block(pts)
    if not plots:
        return []
    return ['set title "%s"' % title, 'set logscale xy', 'unset xtics',
            'set xtics ("1" 1, "4" 4, "16" 16, "64" 64)',
            'set xlabel "guest RAM (GiB)"', 'set ylabel ""',
            'set key bottom right font ",8"', 'set autoscale y',
            'plot ' + ', '.join(plots), data.rstrip('\n')]


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
    growth = [scale_panel(r, *p) for p in SCALE]
    growth = [g for g in growth if g]
    panels = bool(plots) + bool(scale_plots) + len(growth)
    if not panels:
        print('chart: not drawn, %s holds none of rows 1, 8 and 11-13'
              % src)
        return 0
    cols = min(panels, 3)
    rows_ = (panels + cols - 1) // cols
    script = ['set terminal pngcairo noenhanced size %d,%d font "sans,10"'
              % (600 * cols, 480 * rows_),
              "set output '%s'" % out,
              'set multiplot layout %d,%d' % (rows_, cols),
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
    for g in growth:
        script += ['unset logscale', 'set yrange [*:*]'] + g
    script.append('unset multiplot')
    # Inline data ('-') follows each plot command that reads it.
    subprocess.run(['gnuplot'], input='\n'.join(script) + '\n', text=True,
                   check=True)
    print('chart: %s' % out)
    return 0


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]))
