"""The meters, one module each, every one registering one `Meter` class (agent/power/base.py).

Nothing here is imported up front: `agent.power.base.METERS` imports a meter's
module when that meter is first asked for, from `METER_MODULES`, which lists
every file of this folder.
"""
