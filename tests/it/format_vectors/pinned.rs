//! The pinned format vectors: the fixed inputs and every expected value, in
//! the order `format-spec.md` §17 prints them. This file is their one source:
//! the tests in `format_vectors` compute each value and compare it with the
//! constant here, and `format_vectors::spec` reads §17 and compares what it
//! prints with the same constants ([`in_spec_order`]).
//!
//! Multi-line strings use `\` line continuations: the value has no spaces.

// ---------------------------------------- fixed inputs (§17's first table)

/// The first byte of each `seq(start, len)` input.
pub const MASTER_START: u8 = 0x00;
pub const REPO_ID_START: u8 = 0x20;
pub const NONCE_BLOB: u8 = 0x40;
pub const NONCE_FOOTER: u8 = 0x58;
pub const NONCE_INDEX: u8 = 0x70;
pub const NONCE_CONFIG: u8 = 0x88;
pub const NONCE_SNAPSHOT: u8 = 0xa0;
pub const NONCE_KEYFILE: u8 = 0xb8;
pub const SALT_START: u8 = 0xd0;
pub const NONCE_TREE_BLOB: u8 = 0xf0;
/// The machine secret of §17.4a is the hex of `seq(MACHINE_SECRET_START, 32)`.
pub const MACHINE_SECRET_START: u8 = 0x60;

/// The plaintext used for the chunk id and the sealed blobs (28 bytes).
pub const PLAINTEXT: &[u8] = b"sopvault format test vector\n";
pub const CHUNKER_INPUT_SEED: &[u8] = b"sopvault format vectors: chunker input";
pub const CHUNKER_INPUT_LEN: usize = 1 << 20;
pub const PASSWORD: &[u8] = b"correct horse battery staple";
pub const KEY_LABEL: &str = "vector@sopvault";
pub const MACHINE_KEY_LABEL: &str = "backup@server";
/// 2026-11-21T23:30:00Z, i.e. 2026-11-22 06:30:00 at UTC+07:00.
pub const TIME: i64 = 1_795_303_800;
pub const UTC_PLUS_7: i32 = 7 * 3600;

/// Ids made of one repeated byte (`11`×32 and so on).
pub const SUPERSEDED_INDEX_BYTE: u8 = 0x11;
pub const BIG_SQL_LIST_BYTE: u8 = 0x0b;
pub const SUB_TREE_BYTE: u8 = 0x5a;
pub const SECOND_CHUNK_BYTE: u8 = 0xcc;
pub const PARENT_SNAPSHOT_BYTE: u8 = 0x33;

// ---------------------------------------- §17.1 Subkeys and chunk id

pub const SUBKEY_CHUNK_ID: &str =
    "d43b84c858330c84167d7d910f4e7f7a926ff43e78477da6b2c9d5e127442793";
pub const SUBKEY_GEAR: &str = "c854d7d94074f29c3feec073be6ae53178d22710c940c6f716bbdb32606f69bb";
pub const SUBKEY_DATA: &str = "36feefb9d95e839a8ffc14f507c591067f73aac63bace098a6b9ceecdff64624";
pub const SUBKEY_META: &str = "a2bd55ae0c210b9f7c8dca745181f96fed4d4b9d8b0b5ee12da83cf2ee525d80";
pub const CHUNK_ID: &str = "1c63b44023829a08d4ee16322b4f3177a9d2beceb39645ae1e8291df94150dd8";

// ---------------------------------------- §17.2 Chunker

pub const GEAR_0: &str = "0x102981083a29e194";
pub const GEAR_1: &str = "0x9263e402472481f6";
pub const GEAR_2: &str = "0x956753423681b82f";
pub const GEAR_3: &str = "0xaf8b1dc2d7e5c3ac";
pub const GEAR_TABLE_SHA256: &str =
    "36da0afd0e240dd2122d8baf1fc969e980aca77d49f10db07aa8da27967f8dc1";
pub const MASKS_DEFAULT: &str =
    "0x0000d90703537000 0x0000d90f03530000 0x0001b20e06a6e000 0x0001b21e06a60000";
pub const MASKS_SMALL: &str =
    "0x0000d90303530000 0x0000d90003530000 0x0001b20606a60000 0x0001b20006a60000";
pub const CHUNKER_INPUT_FIRST_8: &str = "cfb72917ad478e86";
pub const CHUNKER_INPUT_SHA256: &str =
    "9016aedf8f8163f73ab62c8ab4bfc562b7c65fda8c180a3abf4598dcb0a19351";
pub const CUTS_DEFAULT: &str =
    "35052, 71476, 160354, 236638, 346997, 387320, 459724, 512720, 616215, 649419, \
         806611, 893280, 910761, 980761, 1011316, 1048576";
pub const CUTS_DEFAULT_SHA256: &str =
    "b711abb8d9834d25c80f6c1cbfedf9776e84b5345d3efa1329606acbe518c032";
pub const CUTS_SMALL_COUNT: &str = "215";
pub const CUTS_SMALL_FIRST_10: &str =
    "9311, 11153, 15377, 19702, 32336, 35052, 36987, 41086, 43819, 47634";
pub const CUTS_SMALL_SHA256: &str =
    "5c31bef36817cadeb94094deb2246bfded1b00b09c0ba63c023c94b047bf288a";
pub const CUTS_SMALL_ODD: &str =
    "9311, 11153, 15377, 19702, 32336, 35052, 36987, 41086, 43819, 47634, 50001";

// ---------------------------------------- §17.3 Blobs

pub const BLOB_AAD: &str =
    "534f5056424c4f4200001c0000001c63b44023829a08d4ee16322b4f3177a9d2beceb39645ae1e8291df9415\
    0dd8";
pub const SEALED_DATA_BLOB: &str =
    "404142434445464748494a4b4c4d4e4f505152535455565759ed728b3ce51945659c2d13c9779cdb75b799b4\
         fe13cd27c5d92a65f10adb32a6983db71bd2f550b0aab225";
pub const TREE_BLOB_ID: &str = "0e4524eb26318ea2e83b550da6b15d6e69f666a9c3ba6a6219fa5428f8ac87b7";
pub const SEALED_TREE_BLOB_SHA256: &str =
    "f7bb23e4b13b198007bdc913666b67dfa93aae33ecc55ed2c9b93d7ef5c5f03b";

// ---------------------------------------- §17.3a Codecs 1 and 2

pub const ZSTD_BASE_PLAINTEXT: &str =
    "434f50592074202869642c206e616d61292046524f4d20737464696e3b0a3109427564690a3209536974690a\
    3309416775730a5c2e0a434f50592074202869642c206e616d61292046524f4d20737464696e3b0a31094275\
    64690a3209536974690a3309416775730a5c2e0a434f50592074202869642c206e616d61292046524f4d2073\
    7464696e3b0a3109427564690a3209536974690a3309416775730a5c2e0a";
pub const ZSTD_BASE_ID: &str = "ed7a817f23c3650049ac6c8e4ed4db37f394caf6bcb04d4df5b95bf7a88861c1";
pub const ZSTD_FRAME: &str =
    "28b52ffd20a2f501006403434f50592074202869642c206e616d61292046524f4d20737464696e3b0a310942\
    7564690a3209536974690a3309416775730a5c2e0a01009672aaa0";
pub const ZSTD_AAD: &str =
    "534f5056424c4f420001a2000000ed7a817f23c3650049ac6c8e4ed4db37f394caf6bcb04d4df5b95bf7a888\
    61c1";
pub const ZSTD_SEALED: &str =
    "404142434445464748494a4b4c4d4e4f505152535455565702372d007d328030459e4122eb46b1db75f2c2a9\
    ba49882ad0db3946fc4ae93ca9a142071691ec077c3583a82dba2889b89b1339bc597f279a243129a15d4a9f\
    e3473ed9301ec63993a872fe3de6f8142bd2afb8b76fb9";
pub const DELTA_PLAINTEXT: &str =
    "434f50592074202869642c206e616d61292046524f4d20737464696e3b0a310942756469426179756974690a\
    3309416775730a5c2e0a434f50592074202869642c206e616d61292046524f4d20737464696e3b0a31094275\
    64690a3209536974690a3309416775730a5c2e0a434f50592074202869642c206e616d61292046524f4d2073\
    7464696e3b0a3109427564690a3209536974690a3309416775730a5c2e0a3409446577690a";
pub const DELTA_ID: &str = "9eed4a88f4c46d865165471a2216e671325534d43b859ce3afa6e9d6fe1f1d2e";
pub const DELTA_FRAME: &str = "28b52ffd20a9c5000058426179753409446577690a0400e0c1de7082414433a980";
pub const DELTA_AAD: &str =
    "534f5056424c4f420002a90000009eed4a88f4c46d865165471a2216e671325534d43b859ce3afa6e9d6fe1f\
    1d2eed7a817f23c3650049ac6c8e4ed4db37f394caf6bcb04d4df5b95bf7a88861c1010001000000";
pub const DELTA_SEALED: &str =
    "404142434445464748494a4b4c4d4e4f505152535455565702372d007d39b03145a20000dd63dcf245b79da9\
    d461a8a4706828ed9d4888da649ec792a8ed3e935757c02e86d25cfba9";

// ---------------------------------------- §17.4 Key file

pub const KEY_FILE: &str =
    "534f50564b455900010000000000000001000000002000000100000001000000d0d1d2d3d4d5d6d7d8d9dadb\
         dcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef7829026b000000000f00766563746f7240736f707661756c\
         74b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfa0010f1c0ca55412dce171e7d70f3122df6d82\
         4c61b6bddd685bd046741895bb89a28fabc9fd86d1c859a639faf5e9f046328f7189c0e6f23c0be0418e562d\
         d082f9f4cc46ed02257462a20a6851a853";
pub const KEY_FILE_NAME: &str = "aa9267b2bb4c85d9fccf368b9f4d7fa62444baca79fd0de6b213a7ebf8954d8b";

// ---------------------------------------- §17.4a Machine-secret key file

pub const MACHINE_KEY_FILE: &str =
    "534f50564b455900010000000000000002000000000000000000000000000000d0d1d2d3d4d5d6d7d8d9dadb\
         dcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef7829026b000000000d006261636b757040736572766572b8\
         b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf4c806706fee9e5919ff3228d5970b815f487b5de27\
         46ca63696867ee11349397bdd7245006ac404762e133cb6c2e24a4377d764248e33fc671c6f11e29f1dccb89\
         56a73bb60f2be0a69ad9897b429f5f";
pub const MACHINE_KEY_FILE_NAME: &str =
    "95e5f3e18e9cde168686b2c08806fcbaa7f83d3bbf0ec76271c87f2979d4f567";

// ---------------------------------------- §17.5 Pack file

pub const PACK_FOOTER_PLAINTEXT: &str =
    "010000001c63b44023829a08d4ee16322b4f3177a9d2beceb39645ae1e8291df94150dd81000000000000000\
         440000001c000000000000000000000000000000000000000000000000000000000000000000000000000000\
         00000000";
pub const PACK_FILE: &str =
    "534f505650414b000100000000000000404142434445464748494a4b4c4d4e4f505152535455565759ed728b\
         3ce51945659c2d13c9779cdb75b799b4fe13cd27c5d92a65f10adb32a6983db71bd2f550b0aab22558595a5b\
         5c5d5e5f606162636465666768696a6b6c6d6e6f16b43d85fdd7e0ce2676fa340381c07e1c72d5fec1e0c746\
         160352d67ae21e07079b1cd9cf1507d02fb6d89d9d1c2509287930691ba3bb67ecfe22b084361f87ba45a9e0\
         2aafedd07beb478091aa577ccb888e55d80d50ece74bda6e1fb5868427da1cfc05ea1661d3d9020a84000000\
         00000000534f5056454e4400";
pub const PACK_FILE_NAME: &str = "619f251db3a1323ba907f7a4cc19f762d42225c9346b3409639797b1409a4c8d";

// ---------------------------------------- §17.6 Index file

pub const INDEX_PLAINTEXT: &str =
    "01000000111111111111111111111111111111111111111111111111111111111111111101000000619f251d\
         b3a1323ba907f7a4cc19f762d42225c9346b3409639797b1409a4c8de8000000000000000100000000000000\
         1c63b44023829a08d4ee16322b4f3177a9d2beceb39645ae1e8291df94150dd8100000000000000044000000\
         1c00000000000000000000000000000000000000000000000000000000000000000000000000000000000000";
pub const INDEX_FILE_NAME: &str =
    "be1b013f5b27de8b8884d01fef4118f301746a290d967eeb76c4afa90424b933";

// ---------------------------------------- §17.7 Config file

pub const CONFIG_POSTCARD: &str =
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f808001808004808010808080\
         0806f0a591b00d00";
pub const CONFIG_FILE_NAME: &str =
    "4e44931981025d679e3041dc50da597042275ecc9c328b2bd39cfe33e8f7e192";

// ---------------------------------------- §17.8 Tree and chunk list

pub const TREE_POSTCARD: &str =
    "0505612e747874001c00011c63b44023829a08d4ee16322b4f3177a9d2beceb39645ae1e8291df94150dd81c\
         a48302e807e80705616c696365057374616666f0a591b00d959aef3af0a591b00d959aef3a2a811001010675\
         7365722e6b0176076269672e73716c00f0a20401010b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b\
         0b0b0b0b0b0b0b0b0bd00ff0a204808302e807e80705616c696365057374616666f0a591b00d959aef3af0a5\
         91b00d959aef3a2a81100100056669666fff03a423e807e80705616c696365057374616666f0a591b00d959a\
         ef3af0a591b00d959aef3a2a81100100046c696e6b0205612e747874ffc302e807e80705616c696365057374\
         6166660100f0a591b00d959aef3a2a8110010003737562015a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a\
         5a5a5a5a5a5a5a5a5a5a5a5aed8301e807e80705616c696365057374616666f0a591b00d959aef3af0a591b0\
         0d959aef3a2a81100100";
pub const CHUNK_LIST_POSTCARD: &str =
    "021c63b44023829a08d4ee16322b4f3177a9d2beceb39645ae1e8291df94150dd81ccccccccccccccccccccc\
         cccccccccccccccccccccccccccccccccccccccccccc808004";

// ---------------------------------------- §17.9 Snapshot

pub const SNAPSHOT_POSTCARD: &str =
    "f0a591b00d00e089030e7765625f323032362d31312d3232037765620364623104726f6f7401056461696c79\
         01082f7661722f777777010664622e73716c010d6d7973716c64756d702061707001001ca9e286fef93ce659\
         345e14a671204c69fb5a0f1fab192a82ed3fdcab3b1dd53ff0a591b00d00e08903faa591b00d00e089030e45\
         24eb26318ea2e83b550da6b15d6e69f666a9c3ba6a6219fa5428f8ac87b70133333333333333333333333333\
         333333333333333333333333333333333333338080018080048080100e736f707661756c7420302e312e3003\
         0201a8a3041c1c4401dc0b0001";
pub const SNAPSHOT_FILE_NAME: &str =
    "2db52c1fc1355653a0b069810122e1fbfc38a828320bda95782694caf435fe1b";
pub const SNAPSHOT_RFC3339: &str = "2026-11-22T06:30:00+07:00";
pub const SNAPSHOT_DATE: &str = "2026-11-22";
pub const SNAPSHOT_DATE_UTC: &str = "2026-11-21";

/// Snapshot names of §17.9: the first three `web` snapshots of the day, the
/// first `db` one, two writers' twins listed under NAME~ID, and the next `web`.
pub const NAME_WEB_1: &str = "web_2026-11-22";
pub const NAME_WEB_2: &str = "web_2026-11-22-2";
pub const NAME_WEB_3: &str = "web_2026-11-22-3";
pub const NAME_DB_1: &str = "db_2026-11-22";
pub const NAME_TWIN_A: &str = "web_2026-11-22-3~ababababab01";
pub const NAME_TWIN_B: &str = "web_2026-11-22-3~ababababab02";
pub const NAME_WEB_4: &str = "web_2026-11-22-4";

/// What §17 must print at one place.
pub enum Expect {
    /// Exactly this text (hex blocks with their layout spaces removed).
    Is(String),
    /// Hex bytes that occur somewhere in this pinned value (prose quoting a
    /// few bytes of a vector, such as one node of the tree).
    PartOf(&'static str),
}

fn is(v: impl Into<String>) -> Expect {
    Expect::Is(v.into())
}

fn seq_input(start: u8, len: usize) -> Expect {
    is(format!("seq({start:#04x}, {len})"))
}

fn repeated(byte: u8) -> Expect {
    is(format!("{byte:02x}×32"))
}

/// Every vector §17 prints, labelled, in the order it prints them.
pub fn in_spec_order() -> Vec<(&'static str, Expect)> {
    let generation = &DELTA_AAD[DELTA_AAD.len() - 8..];
    vec![
        ("master key input", seq_input(MASTER_START, 32)),
        ("repository id input", seq_input(REPO_ID_START, 32)),
        ("blob nonce", seq_input(NONCE_BLOB, 24)),
        ("pack footer nonce", seq_input(NONCE_FOOTER, 24)),
        ("index file nonce", seq_input(NONCE_INDEX, 24)),
        ("config nonce", seq_input(NONCE_CONFIG, 24)),
        ("snapshot nonce", seq_input(NONCE_SNAPSHOT, 24)),
        ("key file nonce", seq_input(NONCE_KEYFILE, 24)),
        ("key file salt", seq_input(SALT_START, 32)),
        ("tree blob nonce", seq_input(NONCE_TREE_BLOB, 24)),
        ("K_id", is(SUBKEY_CHUNK_ID)),
        ("K_gear", is(SUBKEY_GEAR)),
        ("K_data", is(SUBKEY_DATA)),
        ("K_meta", is(SUBKEY_META)),
        ("chunk_id(P)", is(CHUNK_ID)),
        ("GEAR[0]", is(GEAR_0)),
        ("GEAR[1]", is(GEAR_1)),
        ("GEAR[2]", is(GEAR_2)),
        ("GEAR[3]", is(GEAR_3)),
        ("SHA-256 of the gear table", is(GEAR_TABLE_SHA256)),
        ("masks, avg 65536", is(MASKS_DEFAULT)),
        ("masks, avg 4096", is(MASKS_SMALL)),
        ("chunker input, first 8 bytes", is(CHUNKER_INPUT_FIRST_8)),
        ("chunker input, SHA-256", is(CHUNKER_INPUT_SHA256)),
        ("default profile cut points", is(CUTS_DEFAULT)),
        (
            "default profile cut points, SHA-256",
            is(CUTS_DEFAULT_SHA256),
        ),
        ("small profile cut count", is(CUTS_SMALL_COUNT)),
        (
            "small profile, first 10 cut points",
            is(CUTS_SMALL_FIRST_10),
        ),
        ("small profile cut points, SHA-256", is(CUTS_SMALL_SHA256)),
        ("small profile on 50001 bytes", is(CUTS_SMALL_ODD)),
        ("data blob AAD", is(BLOB_AAD)),
        ("sealed data blob", is(SEALED_DATA_BLOB)),
        ("tree blob chunk id", is(TREE_BLOB_ID)),
        ("sealed tree blob, SHA-256", is(SEALED_TREE_BLOB_SHA256)),
        ("codec 1 plaintext B", is(ZSTD_BASE_PLAINTEXT)),
        ("codec 1 chunk id", is(ZSTD_BASE_ID)),
        ("codec 1 zstd frame", is(ZSTD_FRAME)),
        ("codec 1 AAD", is(ZSTD_AAD)),
        ("codec 1 sealed", is(ZSTD_SEALED)),
        ("codec 2 chunk id", is(DELTA_ID)),
        ("codec 2 delta frame", is(DELTA_FRAME)),
        ("codec 2 AAD generation", is(generation)),
        ("codec 2 AAD", is(DELTA_AAD)),
        ("codec 2 sealed", is(DELTA_SEALED)),
        ("key file", is(KEY_FILE)),
        ("key file name", is(KEY_FILE_NAME)),
        ("machine-secret key file", is(MACHINE_KEY_FILE)),
        ("machine-secret key file name", is(MACHINE_KEY_FILE_NAME)),
        ("pack footer plaintext", is(PACK_FOOTER_PLAINTEXT)),
        ("pack file", is(PACK_FILE)),
        ("pack file name", is(PACK_FILE_NAME)),
        ("superseded index id", repeated(SUPERSEDED_INDEX_BYTE)),
        ("index plaintext", is(INDEX_PLAINTEXT)),
        ("index file name", is(INDEX_FILE_NAME)),
        ("config postcard", is(CONFIG_POSTCARD)),
        ("config file name", is(CONFIG_FILE_NAME)),
        ("big.sql list id", repeated(BIG_SQL_LIST_BYTE)),
        ("sub tree id", repeated(SUB_TREE_BYTE)),
        ("tree postcard", is(TREE_POSTCARD)),
        ("link node name", Expect::PartOf(TREE_POSTCARD)),
        ("link node target", Expect::PartOf(TREE_POSTCARD)),
        ("chunk list postcard", is(CHUNK_LIST_POSTCARD)),
        ("parent snapshot id", repeated(PARENT_SNAPSHOT_BYTE)),
        ("snapshot postcard", is(SNAPSHOT_POSTCARD)),
        ("snapshot file name", is(SNAPSHOT_FILE_NAME)),
        ("T at +07:00", is(SNAPSHOT_RFC3339)),
        ("date at +07:00", is(SNAPSHOT_DATE)),
        ("first web name", is(NAME_WEB_1)),
        ("second web name", is(NAME_WEB_2)),
        ("third web name", is(NAME_WEB_3)),
        ("first db name", is(NAME_DB_1)),
        ("twin name, as recorded", is(NAME_WEB_3)),
        ("first twin, listed", is(NAME_TWIN_A)),
        ("second twin, listed", is(NAME_TWIN_B)),
        ("next web name", is(NAME_WEB_4)),
    ]
}
