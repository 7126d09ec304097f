"""The echod race (bench/run.py) as a package; bench/README.md describes what it measures.

procfs      what /proc says about a process and the machine (shared with idle_rss.py and Tests/e2e)
workloads   the workloads and the correctness checks
model       the results, typed, and their results.json form
procs       the processes the race starts, signalled only by PID
peers       how each server is built, located and started
clients     the load clients (echoclient, `echod bench`) and perf
measure     one measured run, one workload over every peer, and the time budget
phases      the checks, the pinning calibration, start-up timings and idle memory
summary     medians of the runs (pure)
report      table.md and latency.svg (pure: results in, text out)
cli         the command line and the race's order of phases
"""
