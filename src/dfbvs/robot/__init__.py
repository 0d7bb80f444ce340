"""Robot arms in the loop: UR5e kinematics and a simulated arm with the controller's ``speedL`` semantics
(``ur5e.py``, ``arm_sim.py``), the one conversion from a camera body twist to a ``speedL`` command
(``convert.py``), a safety layer that does not trust the servo (``safety.py``), the adapter over the
``ur-rtde`` package and a fake RTDE client backed by the simulated arm (``ur.py``, ``fake_rtde.py``), the
motion sink the run loop drives (``sink.py``) and the grasp after convergence (``grasp.py``)."""
