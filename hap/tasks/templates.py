"""Sentence templates shared by the tasks and the training corpus.

IOI templates follow Wang et al. (2022). Slots: ``{A}`` and ``{B}`` are the two names of the first
clause and ``{S2}`` the repeated subject. In the BABA order A = S, B = IO; in ABBA, A = IO, B = S;
either way S2 = S and the answer is IO. Prompts stop right before the final name.
"""

from __future__ import annotations

IOI_TEMPLATES: tuple[str, ...] = (
    "Then, {A} and {B} went to the {PLACE}. {S2} gave a {OBJECT} to",
    "Then, {A} and {B} had a lot of fun at the {PLACE}. {S2} gave a {OBJECT} to",
    "Then, {A} and {B} were working at the {PLACE}. {S2} decided to give a {OBJECT} to",
    "Then, {A} and {B} were thinking about going to the {PLACE}. {S2} wanted to give a {OBJECT} to",
    "Then, {A} and {B} had a long argument, and afterwards {S2} said to",
    "After {A} and {B} went to the {PLACE}, {S2} gave a {OBJECT} to",
    "When {A} and {B} got a {OBJECT} at the {PLACE}, {S2} decided to give it to",
    "When {A} and {B} got a {OBJECT} at the {PLACE}, {S2} decided to give the {OBJECT} to",
    "While {A} and {B} were working at the {PLACE}, {S2} gave a {OBJECT} to",
    "While {A} and {B} were commuting to the {PLACE}, {S2} gave a {OBJECT} to",
    "After the lunch, {A} and {B} went to the {PLACE}. {S2} gave a {OBJECT} to",
    "Afterwards, {A} and {B} went to the {PLACE}. {S2} gave a {OBJECT} to",
    "Then, {A} and {B} had a long argument. Afterwards {S2} said to",
    "The {PLACE} {A} and {B} went to had a {OBJECT}. {S2} gave it to",
    "Friends {A} and {B} found a {OBJECT} at the {PLACE}. {S2} gave it to",
)

GREATER_THAN_TEMPLATE = "The {EVENT} lasted from the year {CENTURY}{YY} to the year {CENTURY}"

GENDERED_PRONOUN_TEMPLATES: tuple[str, ...] = (
    "So {NAME} is a {JOB}. Later,",
    "Yesterday {NAME} met a friend at the {PLACE}. Then",
    "{NAME} works as a {JOB}. Every day",
)

FILLER_TEMPLATES: tuple[str, ...] = (
    "{NAME} went to the {PLACE} and {VERB} a {ADJ} {OBJECT}.",
    "The {ADJ} {OBJECT} was in the {PLACE}.",
    "{NAME} {VERB} the {OBJECT} at the {PLACE}.",
    "At the {PLACE}, {NAME} {VERB} a {OBJECT} and a {OBJECT2}.",
    "{NAME} is a {ADJ} {JOB} who {VERB} a {OBJECT}.",
    "In the year {CENTURY}{YY} the {EVENT} began.",
    "The {EVENT} was {ADJ} and {ADJ2}.",
)
