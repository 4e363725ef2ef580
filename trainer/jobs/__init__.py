"""Long work as jobs: recorded in the database, run by a thread of the trainer."""
