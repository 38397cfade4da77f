"""The results database: schema, migrations, recording and queries."""
