//! Groups and memberships on SQLite: one direct conversation per pair, admins kept.

use super::*;

const GROUP_COLUMNS: &str = "id, name, image_url, direct_key, created_at, updated_at";
const MEMBER_COLUMNS: &str = "group_id, user_id, role, joined_at";

fn group_from_row(r: &Row) -> rusqlite::Result<GroupRecord> {
    Ok(GroupRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        image_url: r.get(2)?,
        direct_key: r.get(3)?,
        created_at: time(r.get(4)?),
        updated_at: time(r.get(5)?),
    })
}

fn member_from_row(r: &Row) -> rusqlite::Result<MemberRecord> {
    Ok(MemberRecord {
        group_id: r.get(0)?,
        user_id: r.get(1)?,
        role: if r.get::<_, String>(2)? == "admin" {
            MemberRole::Admin
        } else {
            MemberRole::Member
        },
        joined_at: time(r.get(3)?),
    })
}

fn role_str(role: MemberRole) -> &'static str {
    match role {
        MemberRole::Admin => "admin",
        MemberRole::Member => "member",
    }
}

fn group_by(conn: &Connection, column: &str, value: &str) -> Result<Option<GroupRecord>, Error> {
    conn.query_row(
        &format!("SELECT {GROUP_COLUMNS} FROM chat_groups WHERE {column} = ?1"),
        [value],
        group_from_row,
    )
    .optional()
    .db()
}

fn touch(conn: &Connection, group_id: &str) -> Result<(), Error> {
    conn.execute(
        "UPDATE chat_groups SET updated_at = max(updated_at + 1, ?2) WHERE id = ?1",
        params![group_id, millis(Utc::now())],
    )
    .db()?;
    Ok(())
}

#[async_trait::async_trait]
impl GroupStore for SqliteGroupStore {
    async fn create(&self, group: NewGroup) -> Result<(GroupRecord, bool), Error> {
        self.run(move |conn| {
            let tx = conn.transaction().db()?;
            if let Some(key) = &group.direct_key {
                if let Some(existing) = group_by(&tx, "direct_key", key)? {
                    return Ok((existing, false));
                }
            }
            let (id, now) = (new_id(), millis(Utc::now()));
            tx.execute(
                "INSERT INTO chat_groups (id, name, direct_key, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![id, group.name, group.direct_key, now],
            )
            .db()?;
            for (user, role) in &group.members {
                tx.execute(
                    "INSERT OR IGNORE INTO members (group_id, user_id, role, joined_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![id, user, role_str(*role), now],
                )
                .db()?;
            }
            let created =
                group_by(&tx, "id", &id)?.ok_or_else(|| Error::internal("group vanished"))?;
            tx.commit().db()?;
            Ok((created, true))
        })
        .await
    }

    async fn get(&self, group_id: &str) -> Result<Option<GroupRecord>, Error> {
        let id = group_id.to_string();
        self.run(move |conn| group_by(conn, "id", &id)).await
    }

    async fn groups_of(&self, user_id: &str) -> Result<Vec<GroupRecord>, Error> {
        let user = user_id.to_string();
        self.run(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {GROUP_COLUMNS} FROM chat_groups
                 WHERE id IN (SELECT group_id FROM members WHERE user_id = ?1)
                 ORDER BY updated_at DESC, id DESC"
                ))
                .db()?;
            let groups = statement
                .query_map([user], group_from_row)
                .db()?
                .collect::<Result<Vec<_>, _>>()
                .db()?;
            Ok(groups)
        })
        .await
    }

    async fn members(&self, group_id: &str) -> Result<Vec<MemberRecord>, Error> {
        self.members_of(&[group_id.to_string()]).await
    }

    async fn members_of(&self, group_ids: &[String]) -> Result<Vec<MemberRecord>, Error> {
        let ids = group_ids.to_vec();
        self.run(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {MEMBER_COLUMNS} FROM members WHERE group_id IN \
                     (SELECT value FROM json_each(?1)) ORDER BY joined_at, rowid"
                ))
                .db()?;
            let ids = serde_json::to_string(&ids).map_err(Error::internal)?;
            let members = statement
                .query_map([ids], member_from_row)
                .db()?
                .collect::<Result<Vec<_>, _>>()
                .db()?;
            Ok(members)
        })
        .await
    }

    async fn group_count(&self, user_id: &str) -> Result<u64, Error> {
        let user = user_id.to_string();
        self.run(move |conn| {
            conn.prepare_cached("SELECT count(*) FROM members WHERE user_id = ?1")
                .db()?
                .query_row([user], |r| r.get(0))
                .db()
        })
        .await
    }

    async fn memberships(
        &self,
        user_id: &str,
        group_ids: &[String],
    ) -> Result<Vec<MemberRecord>, Error> {
        let (user, ids) = (user_id.to_string(), group_ids.to_vec());
        self.run(move |conn| {
            let ids = serde_json::to_string(&ids).map_err(Error::internal)?;
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {MEMBER_COLUMNS} FROM members WHERE user_id = ?1 AND group_id IN \
                     (SELECT value FROM json_each(?2))"
                ))
                .db()?;
            let members = statement
                .query_map([user, ids], member_from_row)
                .db()?
                .collect::<Result<Vec<_>, _>>()
                .db()?;
            Ok(members)
        })
        .await
    }

    async fn membership(
        &self,
        group_id: &str,
        user_id: &str,
    ) -> Result<Option<MemberRecord>, Error> {
        let (group, user) = (group_id.to_string(), user_id.to_string());
        self.run(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {MEMBER_COLUMNS} FROM members WHERE group_id = ?1 AND user_id = ?2"
            ))
            .db()?
            .query_row([group, user], member_from_row)
            .optional()
            .db()
        })
        .await
    }

    async fn update(
        &self,
        group_id: &str,
        name: Option<String>,
        image_url: Option<Option<String>>,
    ) -> Result<GroupRecord, Error> {
        let id = group_id.to_string();
        self.run(move |conn| {
            let tx = conn.transaction().db()?;
            if let Some(name) = name {
                tx.execute(
                    "UPDATE chat_groups SET name = ?2 WHERE id = ?1",
                    params![id, name],
                )
                .db()?;
            }
            if let Some(url) = image_url {
                tx.execute(
                    "UPDATE chat_groups SET image_url = ?2 WHERE id = ?1",
                    params![id, url],
                )
                .db()?;
            }
            touch(&tx, &id)?;
            let group = group_by(&tx, "id", &id)?.ok_or(GroupError::GroupNotFound)?;
            tx.commit().db()?;
            Ok(group)
        })
        .await
    }

    async fn add_members(&self, group_id: &str, user_ids: &[String]) -> Result<Vec<String>, Error> {
        let (id, users) = (group_id.to_string(), user_ids.to_vec());
        self.run(move |conn| {
            let tx = conn.transaction().db()?;
            let now = millis(Utc::now());
            let mut added = Vec::new();
            for user in users {
                let inserted = tx
                    .execute(
                        "INSERT OR IGNORE INTO members (group_id, user_id, role, joined_at)
                     VALUES (?1, ?2, 'member', ?3)",
                        params![id, user, now],
                    )
                    .db()?;
                if inserted > 0 {
                    added.push(user);
                }
            }
            if !added.is_empty() {
                touch(&tx, &id)?;
            }
            tx.commit().db()?;
            Ok(added)
        })
        .await
    }

    async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<bool, Error> {
        let (id, user) = (group_id.to_string(), user_id.to_string());
        self.run(move |conn| {
            let removed = conn
                .execute(
                    "DELETE FROM members WHERE group_id = ?1 AND user_id = ?2",
                    [&id, &user],
                )
                .db()?
                > 0;
            if removed {
                touch(conn, &id)?;
            }
            Ok(removed)
        })
        .await
    }

    async fn set_role(&self, group_id: &str, user_id: &str, role: MemberRole) -> Result<(), Error> {
        let (id, user) = (group_id.to_string(), user_id.to_string());
        self.run(move |conn| {
            conn.execute(
                "UPDATE members SET role = ?3 WHERE group_id = ?1 AND user_id = ?2",
                params![id, user, role_str(role)],
            )
            .db()?;
            Ok(())
        })
        .await
    }

    async fn delete(&self, group_id: &str) -> Result<(), Error> {
        let id = group_id.to_string();
        self.run(move |conn| {
            conn.execute("DELETE FROM members WHERE group_id = ?1", [&id])
                .db()?;
            conn.execute("DELETE FROM chat_groups WHERE id = ?1", [&id])
                .db()?;
            Ok(())
        })
        .await
    }
}
