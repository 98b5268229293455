"""Profiling on devices: device profiles (``devices/*.yaml``) and the orchestration that measures artifacts.

``ondevice.py`` in this package is the self-contained script that runs on the target; it imports nothing
from edgekit.
"""

from edgekit.profile.devices import DeviceProfile, load_device_profile
from edgekit.profile.run import profile_artifacts

__all__ = ["DeviceProfile", "load_device_profile", "profile_artifacts"]
