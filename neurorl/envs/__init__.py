"""Navigation tasks of NeuroRL, registered with Gymnasium on import.

After ``import neurorl.envs``, ``gymnasium.make("neurorl/2DNav-v1")`` (or 2DNav-v2,
ReacherNav-v0, AntNav-v0) builds a task with its time limit. The MuJoCo tasks are imported
only when made, so importing this package does not load MuJoCo.
"""

from neurorl.envs.nav2d import Nav2DEnv
from neurorl.envs.registration import ENV_IDS, NAV2D_V2_KWARGS, TASKS, TaskSpec, register_envs

__all__ = ["ENV_IDS", "NAV2D_V2_KWARGS", "TASKS", "Nav2DEnv", "TaskSpec", "register_envs"]

register_envs()
