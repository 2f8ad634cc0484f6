from sqlmodel import select

from models.user import User


def test_database_fixture_is_migrated_and_empty(database, make_user):
    assert database.ping()
    with database.session() as s:
        assert s.exec(select(User)).all() == []
    user = make_user(database)
    with database.session() as s:
        assert s.get(User, user.id).email == user.email
