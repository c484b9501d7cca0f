"""Helpers shared by test modules in several folders of tests/; no tests of their own."""
