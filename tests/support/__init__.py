"""What the tests share, in one place (fixtures themselves live in tests/conftest.py).

- ``paths``: the repository, the model the tests use, the development data.
- ``waiting``: ``wait_for``, the one polling loop.
- ``commands``: running ``beatwatch`` as a user does, in a child process.
"""
