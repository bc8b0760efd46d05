"""`make demo`: the whole system on one machine, with emulated devices, and a check that every
reading they produced was stored exactly once.

    python -m demo                 # until Ctrl-C
    python -m demo --seconds 30    # then stop, drain, and print the summary (exit 1 on loss)

Modules: `run` (the orchestration and its stop sequence), `procs` (child processes, signals),
`plant` (the gateway's configuration and which series belong to which device), `devices` (the
emulated devices, a process of their own), `mqtt` (a private Mosquitto and the MQTT sensors),
`drain` (when everything produced has reached the receiver), `cloud` (the receiver's query API),
`summary` (produced vs stored). Not part of the installed distribution.
"""
