"""Programs and tools around the pipeline: each module is one ``beatwatch`` command or its helper.

``broker`` (embedded tansu), ``alerts`` (tail alerts and incidents), ``demo``,
``bench``, and their helpers ``processes`` (child processes) and ``promtext``
(reading a metrics endpoint). They use the contract in :mod:`beatwatch` and run
the programs (``producer``, ``detector``, ``trainer``) only as child processes;
nothing here is imported by the contract or by a program.
"""
