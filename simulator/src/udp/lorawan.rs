//! A LoRaWAN 1.0.x end device's frames, built and checked with the `lorawan` crate: the OTAA
//! JoinRequest, the JoinAccept that opens a session, UnconfirmedDataUp with an encrypted
//! FRMPayload, and data downlinks checked (DevAddr, FCntDown, MIC) before they are decrypted.
//!
//! EUIs are given most significant byte first, as ChirpStack shows them; on the air they are
//! little-endian, and so are DevNonce, DevAddr and the frame counters.

use ::lorawan::creator::{DataPayloadCreator, JoinRequestCreator};
use ::lorawan::keys::{AES128, AppKey, AppSKey, NewSKey};
use ::lorawan::parser::{
    DataHeader, DecryptedJoinAcceptPayload, DevNonce, EncryptedDataPayload, FCtrl, FRMPayload,
};

/// FCtrl bit of an uplink acknowledging a confirmed downlink.
const FCTRL_ACK: u8 = 0x20;

/// LoRaWAN 1.0 MAX_FCNT_GAP: a downlink counter further ahead than this is refused.
const MAX_FCNT_GAP: u32 = 16_384;

/// An OTAA session, opened by a JoinAccept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Device address, as on the air (little-endian).
    pub dev_addr: [u8; 4],
    /// Network session key: the MIC of every data frame.
    pub nwk_s_key: [u8; 16],
    /// Application session key: FRMPayloads on ports above 0.
    pub app_s_key: [u8; 16],
    /// The lowest downlink counter still acceptable (one above the last one accepted).
    pub f_cnt_down: u32,
}

impl Session {
    /// The DevAddr as ChirpStack shows it (most significant byte first).
    pub fn dev_addr_hex(&self) -> String {
        self.dev_addr
            .iter()
            .rev()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Why a received frame was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Not a frame of the expected type, or too short for one.
    Invalid,
    /// The MIC does not match the key.
    Mic,
    /// A data downlink for another DevAddr.
    DevAddr,
    /// A data downlink whose counter went back or jumped too far.
    FCntDown,
    /// An uplink frame, not a downlink.
    Direction,
    /// The payload does not fit a frame.
    TooLong,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrameError::Invalid => "not a valid frame of that type",
            FrameError::Mic => "wrong MIC",
            FrameError::DevAddr => "for another DevAddr",
            FrameError::FCntDown => "downlink frame counter replayed or too far ahead",
            FrameError::Direction => "an uplink frame",
            FrameError::TooLong => "payload too long for a frame",
        })
    }
}

fn wire(eui: [u8; 8]) -> [u8; 8] {
    let mut w = eui;
    w.reverse();
    w
}

/// The JoinRequest of a device (`join_eui` and `dev_eui` most significant byte first).
pub fn join_request(
    app_key: [u8; 16],
    join_eui: [u8; 8],
    dev_eui: [u8; 8],
    dev_nonce: u16,
) -> [u8; 23] {
    let mut creator = JoinRequestCreator::new();
    creator
        .set_app_eui(wire(join_eui))
        .set_dev_eui(wire(dev_eui))
        .set_dev_nonce(dev_nonce.to_le_bytes());
    let mut out = [0u8; 23];
    out.copy_from_slice(creator.build(&AppKey::from(app_key)));
    out
}

/// Opens the session a JoinAccept grants to the JoinRequest sent with `dev_nonce`: decrypts
/// it with the AppKey, checks its MIC, derives NwkSKey and AppSKey.
pub fn accept_join(frame: &[u8], app_key: [u8; 16], dev_nonce: u16) -> Result<Session, FrameError> {
    if frame.first().map(|m| m & 0xe0) != Some(0x20) {
        return Err(FrameError::Invalid);
    }
    let key = AppKey::from(app_key);
    let accept = DecryptedJoinAcceptPayload::new(frame.to_vec(), &key).map_err(|e| match e {
        ::lorawan::parser::Error::InvalidMic => FrameError::Mic,
        _ => FrameError::Invalid,
    })?;
    let nonce = DevNonce::from(dev_nonce.to_le_bytes());
    let nwk = accept.derive_newskey(&nonce, &key);
    let app = accept.derive_appskey(&nonce, &key);
    let mut dev_addr = [0u8; 4];
    dev_addr.copy_from_slice(accept.dev_addr().as_ref());
    Ok(Session {
        dev_addr,
        nwk_s_key: nwk.inner().0,
        app_s_key: app.inner().0,
        f_cnt_down: 0,
    })
}

/// An UnconfirmedDataUp carrying `payload` on `f_port`, counter `f_cnt`; `ack` acknowledges
/// the last confirmed downlink.
pub fn data_up(
    session: &Session,
    f_cnt: u32,
    f_port: u8,
    payload: &[u8],
    ack: bool,
) -> Result<Vec<u8>, FrameError> {
    let mut creator = DataPayloadCreator::new();
    creator
        .set_uplink(true)
        .set_confirmed(false)
        .set_dev_addr(&session.dev_addr)
        .set_fctrl(&FCtrl::new(if ack { FCTRL_ACK } else { 0 }, true))
        .set_fcnt(f_cnt)
        .set_f_port(f_port);
    let frame = creator
        .build(
            payload,
            &[],
            &NewSKey::from(session.nwk_s_key),
            &AppSKey::from(session.app_s_key),
        )
        .map_err(|_| FrameError::TooLong)?;
    Ok(frame.to_vec())
}

/// The DevAddr of a data downlink, to find the device it is for.
pub fn downlink_dev_addr(frame: &[u8]) -> Option<[u8; 4]> {
    let mhdr = *frame.first()?;
    if !matches!(mhdr >> 5, 0b011 | 0b101) || frame.len() < 12 {
        return None;
    }
    frame.get(1..5)?.try_into().ok()
}

/// A data downlink the device accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downlink {
    /// Its port; `None` for a frame of MAC commands in FOpts only.
    pub f_port: Option<u8>,
    /// The decrypted FRMPayload (MAC commands on port 0).
    pub payload: Vec<u8>,
    /// A ConfirmedDataDown: the next uplink must set ACK.
    pub confirmed: bool,
    /// Its full downlink counter.
    pub f_cnt: u32,
}

/// Checks a data downlink against the session (direction, DevAddr, FCntDown, MIC), decrypts
/// it and moves the session's downlink counter past it.
pub fn open_downlink(frame: &[u8], session: &mut Session) -> Result<Downlink, FrameError> {
    let encrypted = EncryptedDataPayload::new(frame.to_vec()).map_err(|_| FrameError::Invalid)?;
    if encrypted.is_uplink() {
        return Err(FrameError::Direction);
    }
    let fhdr = encrypted.fhdr();
    if fhdr.dev_addr().as_ref() != session.dev_addr {
        return Err(FrameError::DevAddr);
    }
    // Only the 16 low bits travel: the full counter is the smallest one at or above the
    // expected value with those low bits.
    let low = u32::from(fhdr.fcnt());
    let mut f_cnt = (session.f_cnt_down & 0xffff_0000) | low;
    if f_cnt < session.f_cnt_down {
        f_cnt = f_cnt.checked_add(0x1_0000).ok_or(FrameError::FCntDown)?;
    }
    if f_cnt - session.f_cnt_down >= MAX_FCNT_GAP {
        return Err(FrameError::FCntDown);
    }
    let nwk = AES128(session.nwk_s_key);
    let app = AES128(session.app_s_key);
    if !encrypted.validate_mic(&nwk, f_cnt) {
        return Err(FrameError::Mic);
    }
    let confirmed = encrypted.is_confirmed();
    let f_port = encrypted.f_port();
    let decrypted = encrypted
        .decrypt(Some(&nwk), Some(&app), f_cnt)
        .map_err(|_| FrameError::Invalid)?;
    let payload = match decrypted.frm_payload() {
        FRMPayload::Data(d) => d.to_vec(),
        FRMPayload::MACCommands(m) => m.data().to_vec(),
        FRMPayload::None => Vec::new(),
    };
    session.f_cnt_down = f_cnt.wrapping_add(1);
    Ok(Downlink {
        f_port,
        payload,
        confirmed,
        f_cnt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP_KEY: [u8; 16] = [
        0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f,
        0x3c,
    ];

    #[test]
    fn a_join_request_puts_euis_and_nonce_little_endian() {
        let f = join_request(
            APP_KEY,
            [0x01; 8],
            [0x70, 0xb3, 0xd5, 0x7e, 0, 0, 0, 5],
            0x0102,
        );
        assert_eq!(f[0], 0x00);
        assert_eq!(&f[1..9], &[0x01; 8]);
        assert_eq!(&f[9..17], &[5, 0, 0, 0, 0x7e, 0xd5, 0xb3, 0x70]);
        assert_eq!(&f[17..19], &[0x02, 0x01]);
        let parsed = ::lorawan::parser::JoinRequestPayload::new(f.to_vec()).expect("parses");
        assert!(parsed.validate_mic(&AES128(APP_KEY)));
        assert!(!parsed.validate_mic(&AES128([0; 16])));
    }

    fn downlink(session: &Session, f_cnt: u32, confirmed: bool, payload: &[u8]) -> Vec<u8> {
        let mut creator = DataPayloadCreator::new();
        creator
            .set_uplink(false)
            .set_confirmed(confirmed)
            .set_dev_addr(&session.dev_addr)
            .set_fcnt(f_cnt)
            .set_f_port(10);
        creator
            .build(
                payload,
                &[],
                &NewSKey::from(session.nwk_s_key),
                &AppSKey::from(session.app_s_key),
            )
            .expect("builds")
            .to_vec()
    }

    #[test]
    fn a_downlink_is_taken_once_and_its_counter_only_goes_up() {
        let mut s = Session {
            dev_addr: [1, 2, 3, 4],
            nwk_s_key: [1; 16],
            app_s_key: [2; 16],
            f_cnt_down: 0,
        };
        let first = downlink(&s, 0, true, &[0x01, 0x02]);
        let d = open_downlink(&first, &mut s).expect("taken");
        assert_eq!(
            (d.f_port, d.payload.as_slice(), d.confirmed, d.f_cnt),
            (Some(10), &[0x01, 0x02][..], true, 0)
        );
        assert_eq!(
            open_downlink(&first, &mut s),
            Err(FrameError::FCntDown),
            "a replay"
        );
        let later = downlink(&s, 20_000, false, &[0x01, 0x04]);
        assert_eq!(
            open_downlink(&later, &mut s),
            Err(FrameError::FCntDown),
            "too far ahead"
        );
        let next = downlink(&s, 5, false, &[0x01, 0x04]);
        let mut other = s.clone();
        other.nwk_s_key = [3; 16];
        assert_eq!(open_downlink(&next, &mut other), Err(FrameError::Mic));
        other.dev_addr = [9; 4];
        assert_eq!(open_downlink(&next, &mut other), Err(FrameError::DevAddr));
        assert_eq!(open_downlink(&next, &mut s).map(|d| d.f_cnt), Ok(5));
        assert_eq!(s.f_cnt_down, 6);
        let up = data_up(&s, 0, 1, &[1, 2, 3], false).expect("uplink");
        assert_eq!(open_downlink(&up, &mut s), Err(FrameError::Direction));
    }

    #[test]
    fn garbage_downlinks_are_errors_not_panics() {
        let mut s = Session {
            dev_addr: [1, 2, 3, 4],
            nwk_s_key: [1; 16],
            app_s_key: [2; 16],
            f_cnt_down: 0,
        };
        for frame in [
            &[][..],
            &[0x60],
            &[0x60, 4, 3, 2, 1, 0, 0, 0],
            &[0xff; 40],
            &[0x60, 1, 2, 3, 4, 0x0f, 0, 0, 1, 2, 3, 4],
        ] {
            assert!(open_downlink(frame, &mut s).is_err(), "{frame:?}");
        }
        assert!(accept_join(&[0x20; 5], APP_KEY, 1).is_err());
        assert_eq!(accept_join(&[0x20; 17], APP_KEY, 1), Err(FrameError::Mic));
        assert_eq!(downlink_dev_addr(&[0x40; 20]), None, "an uplink");
        assert_eq!(
            downlink_dev_addr(&[0x60, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0]),
            Some([1, 2, 3, 4])
        );
    }
}
