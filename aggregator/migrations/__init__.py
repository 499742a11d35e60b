"""Numbered schema migrations (mNNNN_name.py), rendered by aggregator.ddl.Renderer."""
