"""Multi-step forecasting of a series: the task and the classical baselines it is scored against.

`ForecastingTask` is re-exported here: checkpoints written before the layout change name
`lightsuite.tasks.forecasting.ForecastingTask` as their task.
"""

from lightsuite.tasks.forecasting.task import ForecastingTask

__all__ = ["ForecastingTask"]
