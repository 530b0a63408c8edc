"""nbval runs the notebooks headless, like the batch runner.

Without a live front end, the training progress bars would be ipywidgets updated every epoch: a
stream of messages that nobody displays, which nbval only reads after a cell has finished (a
long cell can then lose the kernel's final status message and time out). ``REPRO_HEADLESS``
makes ``repro.train.fit`` draw no bar. It is set just before the first notebook's kernel starts,
so the unit tests collected before the notebooks keep the default environment.
"""

import os


def pytest_runtest_setup(item):
    if str(item.fspath).endswith(".ipynb"):
        os.environ["REPRO_HEADLESS"] = "1"
