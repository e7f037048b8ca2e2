"""FastAPI + a JWT Depends(get_current_user), served by tests/test_e2e_frameworks.py under the CLI."""

from __future__ import annotations

import datetime

import jwt
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel

SECRET = "e2e-secret-for-tests-only-0123456789"
USERS = {"jane": {"id": 42, "username": "jane", "email": "jane@example.com", "password": "pw"}}
oauth2 = OAuth2PasswordBearer(tokenUrl="/token")
app = FastAPI()


class User(BaseModel):
    id: int
    username: str
    email: str


class Login(BaseModel):
    username: str
    password: str


class PaymentDeclined(Exception):
    pass


@app.exception_handler(PaymentDeclined)
async def declined(request: Request, exc: PaymentDeclined) -> JSONResponse:
    return JSONResponse({"error": "declined"}, status_code=502)


def get_current_user(token: str = Depends(oauth2)) -> User:
    try:
        claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    except jwt.PyJWTError:
        raise HTTPException(401, "invalid token") from None
    record = USERS[claims["sub"]]
    return User(id=record["id"], username=record["username"], email=record["email"])


@app.post("/token")
def token(login: Login) -> dict:
    record = USERS.get(login.username)
    if record is None or record["password"] != login.password:
        raise HTTPException(401, "wrong username or password")
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)
    encoded = jwt.encode({"sub": login.username, "exp": expires}, SECRET, algorithm="HS256")
    return {"access_token": encoded, "token_type": "bearer"}


@app.get("/users/me")
def me(current_user: User = Depends(get_current_user)) -> User:
    return current_user


@app.get("/books/{pk}")
def book(pk: int, current_user: User = Depends(get_current_user)) -> dict:
    return {"pk": pk}


@app.get("/boom")
def boom(current_user: User = Depends(get_current_user)) -> None:
    raise RuntimeError("unhandled")


@app.get("/declined")
def handled(current_user: User = Depends(get_current_user)) -> None:
    raise PaymentDeclined("card declined")
