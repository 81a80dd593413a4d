"""Test helpers: nodes in the test's event loop, tenants, free ports."""
