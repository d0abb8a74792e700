"""The ground floor every part of the package stands on; it imports neither Chainer nor TensorFlow.

``schedules`` (lambda_t and the tempering forms), ``runinfo`` (run records, atomic writes, locks),
``seeding``, ``download`` (downloads and checksums), ``sample_distance`` (energy distance, MMD),
``banana`` (the toy density of Fig. 2 and J.2), ``cli_checks`` (command-line checks), ``interrupt``
(SIGTERM handling), ``paired_stats`` (paired seed-by-seed comparisons). ``chainer_va`` (Chainer),
``tfp_flows`` and ``rl`` (TensorFlow) import from here and never from each other.
"""
