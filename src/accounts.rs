//! Signing up, in and out: passwords hashed with Argon2id, sessions as random tokens the
//! store keeps only the digest of.
//!
//! Why it is shaped so:
//! - **Hashing is slow on purpose** (Argon2id, 19 MiB, 2 passes, 1 lane: the `argon2`
//!   crate's defaults, OWASP's first recommendation; about 30 ms of one core here). It runs
//!   on tokio's blocking threads, at most [`HASHING_AT_ONCE`] at a time, so a burst of
//!   sign-ins costs a bounded amount of memory and never stalls the threads that carry
//!   messages.
//! - **A wrong name and a wrong password look the same**: both answer
//!   [`AccountError::BadCredentials`], and both verify one password against one Argon2id
//!   hash (an unknown name against a hash made at start-up with the same parameters), so
//!   the time taken does not tell which names exist.
//! - **Nothing but the token digest is stored**: a copy of the database signs nobody in;
//!   signing out deletes the row, so a copied cookie stops working too.

use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

use crate::domain::{Account, DisplayName, NameKey, Password, SessionToken, StoredAccount, UserId};
use crate::store::{Store, StoreError};

/// Password hashes computed at once (each holds 19 MiB while it runs).
pub const HASHING_AT_ONCE: usize = 2;

/// How long a sign-in waits for its turn to hash before the server counts as busy.
const HASHING_WAIT: Duration = Duration::from_secs(10);

/// Why an account action failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Sign-in: no such name, or not its password (the two are never told apart).
    #[error("Wrong name or password.")]
    BadCredentials,
    /// Sign-up or rename: the name, or a name that looks like it, is someone's.
    #[error("The name {0} is taken: someone has claimed it (or a name that looks like it).")]
    NameTaken(DisplayName),
    /// Sign-up: this browser's user already holds a name.
    #[error("You have already claimed a name; sign in with it.")]
    AlreadyClaimed,
    /// Password change: the current password was not right.
    #[error("That is not your current password.")]
    WrongPassword,
    /// Too many hashes waiting.
    #[error("The server is busy checking passwords; try again in a moment.")]
    Busy,
    #[error("No random numbers to make a session with; try again.")]
    NoRandomness,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The accounts of one server: its store, and the hashing it allows at once.
pub struct Accounts {
    store: Arc<dyn Store>,
    hashing: Arc<Semaphore>,
    /// A hash of a random password, verified against when a name is unknown, so that a
    /// wrong name costs what a wrong password costs. Made at the first sign-in.
    decoy: tokio::sync::OnceCell<String>,
}

impl Accounts {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            hashing: Arc::new(Semaphore::new(HASHING_AT_ONCE)),
            decoy: tokio::sync::OnceCell::new(),
        }
    }

    /// Claims `name` for `user` with `password`, and signs that browser in.
    pub async fn sign_up(
        &self,
        user: &UserId,
        name: &DisplayName,
        password: &Password,
    ) -> Result<(Account, SessionToken), AccountError> {
        let key = NameKey::of(name);
        // Cheap refusals first: a hash is not spent on a name that is taken.
        if self.store.account(user).await?.is_some() {
            return Err(AccountError::AlreadyClaimed);
        }
        if self.store.holder(&key).await?.is_some() {
            return Err(AccountError::NameTaken(name.clone()));
        }
        let password_hash = self.blocking(password.as_bytes().to_vec(), hash).await?;
        let account = Account {
            id: user.clone(),
            name: name.clone(),
            moderator: false,
        };
        let stored = StoredAccount {
            account,
            password_hash,
        };
        // The database has the last word: two sign-ups for one name at once leave one.
        if !self.store.create_account(&stored, &key).await? {
            return Err(AccountError::NameTaken(name.clone()));
        }
        let token = self.start_session(&stored.account.id).await?;
        Ok((stored.account, token))
    }

    /// Signs in with a name and its password.
    pub async fn sign_in(
        &self,
        name: &str,
        password: &Password,
    ) -> Result<(Account, SessionToken), AccountError> {
        let found = match DisplayName::parse(name) {
            Ok(name) => self.store.account_by_key(&NameKey::of(&name)).await?,
            Err(_) => None,
        };
        // Made by the first sign-in, whatever its name: no later one waits for it, so no
        // answer's time tells whether a name exists. (Not at start-up: a server that never
        // sees a sign-in never spends the 19 MiB and the core it takes.)
        let decoy = self.decoy().await?;
        let against = match &found {
            Some(found) => found.password_hash.clone(),
            None => decoy,
        };
        let matches = self.verify(password, against).await?;
        match found {
            Some(found) if matches => {
                let token = self.start_session(&found.account.id).await?;
                Ok((found.account, token))
            }
            _ => Err(AccountError::BadCredentials),
        }
    }

    /// The account a session token signs in, if its session is live.
    pub async fn signed_in(&self, token: &SessionToken) -> Result<Option<Account>, StoreError> {
        self.store.session(&token.digest()).await
    }

    /// Ends one session.
    pub async fn sign_out(&self, token: &SessionToken) -> Result<(), StoreError> {
        self.store.end_session(&token.digest()).await
    }

    /// Ends every session of an account, this browser's too; returns how many.
    pub async fn sign_out_everywhere(&self, account: &UserId) -> Result<u64, StoreError> {
        self.store.end_sessions(account, None).await
    }

    /// Changes a password when the current one is given, and ends every other session of
    /// the account (the one `token` belongs to stays); returns how many ended.
    pub async fn change_password(
        &self,
        account: &Account,
        token: &SessionToken,
        current: &Password,
        new: &Password,
    ) -> Result<u64, AccountError> {
        let key = NameKey::of(&account.name);
        let Some(stored) = self.store.account_by_key(&key).await? else {
            return Err(AccountError::WrongPassword);
        };
        if stored.account.id != account.id || !self.verify(current, stored.password_hash).await? {
            return Err(AccountError::WrongPassword);
        }
        let password_hash = self.blocking(new.as_bytes().to_vec(), hash).await?;
        self.store.set_password(&account.id, &password_hash).await?;
        Ok(self
            .store
            .end_sessions(&account.id, Some(&token.digest()))
            .await?)
    }

    /// Who holds `name` (or a name that looks like it), if anyone.
    pub async fn holder(&self, name: &DisplayName) -> Result<Option<UserId>, StoreError> {
        let found = self.store.holder(&NameKey::of(name)).await?;
        Ok(found.map(|found| found.id))
    }

    /// The account of a user id, if it has one.
    pub async fn account(&self, user: &UserId) -> Result<Option<Account>, StoreError> {
        self.store.account(user).await
    }

    /// Renames an account, if no one else holds the new name.
    pub async fn rename(&self, user: &UserId, name: &DisplayName) -> Result<(), AccountError> {
        if self
            .store
            .rename_account(user, name, &NameKey::of(name))
            .await?
        {
            Ok(())
        } else {
            Err(AccountError::NameTaken(name.clone()))
        }
    }

    /// Makes the holder of `name` a moderator, or not; `None` when no one holds it.
    pub async fn set_moderator(
        &self,
        name: &DisplayName,
        moderator: bool,
    ) -> Result<Option<Account>, StoreError> {
        self.store
            .set_moderator(&NameKey::of(name), moderator)
            .await
    }

    async fn decoy(&self) -> Result<String, AccountError> {
        let decoy = self.decoy.get_or_try_init(|| async {
            let mut random = [0_u8; 32];
            getrandom::fill(&mut random).map_err(|_| AccountError::NoRandomness)?;
            self.blocking(random.to_vec(), hash).await
        });
        Ok(decoy.await?.clone())
    }

    async fn start_session(&self, account: &UserId) -> Result<SessionToken, AccountError> {
        let token = SessionToken::generate().ok_or(AccountError::NoRandomness)?;
        self.store.add_session(&token.digest(), account).await?;
        Ok(token)
    }

    async fn verify(&self, password: &Password, against: String) -> Result<bool, AccountError> {
        let password = password.as_bytes().to_vec();
        self.blocking(password, move |password| Ok(verify(password, &against)))
            .await
    }

    /// Runs one hash or verification on a blocking thread, when its turn comes.
    async fn blocking<T: Send + 'static>(
        &self,
        password: Vec<u8>,
        work: impl FnOnce(&[u8]) -> Result<T, AccountError> + Send + 'static,
    ) -> Result<T, AccountError> {
        let turn = tokio::time::timeout(HASHING_WAIT, Arc::clone(&self.hashing).acquire_owned())
            .await
            .map_err(|_| AccountError::Busy)?
            .map_err(|_| AccountError::Busy)?;
        // The turn goes with the work: a request dropped mid-hash (its client gone) cannot
        // free a place while its hash still runs.
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            work(&password)
        })
        .await
        .map_err(|_| AccountError::Busy)?
    }
}

/// A new Argon2id hash of `password` with a fresh random salt, as a PHC string.
fn hash(password: &[u8]) -> Result<String, AccountError> {
    Argon2::default()
        .hash_password(password)
        .map(|hash| hash.to_string())
        .map_err(|_| AccountError::NoRandomness)
}

/// Whether `password` is the one `hash` was made from. A hash that cannot be read (edited
/// by hand) matches nothing.
fn verify(password: &[u8], hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_the_stated_parameters_and_salted() {
        let one = hash(b"correct horse").unwrap();
        let two = hash(b"correct horse").unwrap();
        assert!(one.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{one}");
        assert_ne!(one, two, "each hash has its own salt");
        assert!(verify(b"correct horse", &one));
        assert!(verify(b"correct horse", &two));
        assert!(!verify(b"correct horse!", &one));
        assert!(!verify(b"correct horse", "not a hash"));
    }
}
