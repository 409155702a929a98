"""What the tests share, in one place (fixtures are registered in tests/conftest.py).

- ``paths``: the repository, the model the tests use, the development data.
- ``waiting``: ``wait_for``, the one polling loop.
- ``commands``: running ``beatwatch`` as a user does: to its end (``run``,
  ``run_beatwatch``, ``error_line``) or in the background (``Background``),
  with the user's ``BEATWATCH_*`` settings left out (``child_env``).
- ``clients``: the ``kafka_client`` fixture (a test runs once per Kafka client)
  and ``client_settings``.
- ``pipeline``: topics, a detector in a thread, reading a topic back.
- ``faults``: the fault suite's detector process, replays and accounting.
- ``network``: test hosts in network namespaces, links to cut and degrade.
- ``console``: the console as a user starts it, and a real chromium.
- ``deploy``, ``kubernetes``: the deployment files, read and checked as data.
- ``ecg``: a synthetic ECG with known beats, written as a WFDB record.
"""
