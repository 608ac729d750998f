//! Fragmented MP4 (CMAF) for LL-HLS: init segments and `moof`+`mdat` fragments.
//!
//! Boxes are built with the `mp4-atom` crate (ftyp, moov and its tree, moof/traf); the
//! `mdat` header is written by hand so sample data is copied once, straight into the
//! output buffer.
//!
//! Tracks: video is track 1 with a 90 kHz timescale (the media unit timeline), audio is
//! track 2 with the AAC sample rate as timescale (1024 ticks per frame).
//!
//! Video samples are placed by DTS (`tfdt`, durations from DTS differences); with
//! B-frames each sample carries its composition offset (pts − dts, never negative) in a
//! version 1 `trun`, so presentation times are the media units' `pts` on the same
//! timeline as audio and no edit list is needed. Without B-frames no offsets are written.

use crate::error::BridgeError;
use crate::media_unit::{AacConfig, H264Params, TIMESCALE};
use bytes::{BufMut, Bytes, BytesMut};
use mp4_atom::{
    Audio, Avc1, Avcc, AvccExt, Codec, Dinf, Dref, Encode, Esds, FourCC, Ftyp, Hdlr, Mdhd, Mdia,
    Mfhd, Minf, Moof, Moov, Mp4a, Mvex, Mvhd, Smhd, Stbl, Stco, Stsc, Stsd, Stsz, Stts, Tfdt, Tfhd,
    Tkhd, Traf, Trak, Trex, Trun, TrunEntry, Url, Visual, Vmhd, esds,
};

/// Track id of the video track.
pub const VIDEO_TRACK_ID: u32 = 1;
/// Track id of the audio track.
pub const AUDIO_TRACK_ID: u32 = 2;
/// Sample flags of a sync sample (depends on no other sample).
const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// Sample flags of a non-sync sample (depends on others, `sample_is_non_sync_sample`).
const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// Builds the init segment (`ftyp` + `moov`) for the given tracks.
pub fn init_segment(
    video: Option<&H264Params>,
    audio: Option<&AacConfig>,
) -> Result<Bytes, BridgeError> {
    let ftyp = Ftyp {
        major_brand: FourCC::new(b"iso6"),
        minor_version: 0,
        compatible_brands: vec![
            FourCC::new(b"iso6"),
            FourCC::new(b"cmfc"),
            FourCC::new(b"mp41"),
        ],
    };
    let mut traks = Vec::new();
    let mut trex = Vec::new();
    if let Some(params) = video {
        traks.push(video_trak(params)?);
        trex.push(Trex {
            track_id: VIDEO_TRACK_ID,
            default_sample_description_index: 1,
            ..Default::default()
        });
    }
    if let Some(config) = audio {
        traks.push(audio_trak(config));
        trex.push(Trex {
            track_id: AUDIO_TRACK_ID,
            default_sample_description_index: 1,
            ..Default::default()
        });
    }
    let moov = Moov {
        mvhd: Mvhd {
            timescale: 1000,
            rate: 1.into(),
            volume: 1.into(),
            next_track_id: 3,
            ..Default::default()
        },
        mvex: Some(Mvex { mehd: None, trex }),
        trak: traks,
        ..Default::default()
    };
    let mut out = BytesMut::with_capacity(1024);
    ftyp.encode(&mut out)?;
    moov.encode(&mut out)?;
    Ok(out.freeze())
}

fn empty_stbl(codec: Codec) -> Stbl {
    Stbl {
        stsd: Stsd {
            codecs: vec![codec],
        },
        stts: Stts::default(),
        stsc: Stsc::default(),
        stsz: Stsz::default(),
        stco: Some(Stco::default()),
        ..Default::default()
    }
}

fn dinf() -> Dinf {
    Dinf {
        dref: Dref {
            entries: vec![
                Url {
                    location: String::new(),
                }
                .into(),
            ],
        },
    }
}

fn video_trak(params: &H264Params) -> Result<Trak, BridgeError> {
    let mut avcc = Avcc::new(&params.sps, &params.pps)?;
    if matches!(params.profile_idc, 100 | 110 | 122 | 144) && params.avcc.len() >= 4 {
        // The chroma/bit-depth bytes at the end of our AVCDecoderConfigurationRecord.
        let tail = &params.avcc[params.avcc.len() - 4..];
        avcc.ext = Some(AvccExt {
            chroma_format: tail[0] & 0x03,
            bit_depth_luma: (tail[1] & 0x07) + 8,
            bit_depth_chroma: (tail[2] & 0x07) + 8,
            sequence_parameter_sets_ext: Vec::new(),
        });
    }
    let width = u16::try_from(params.width).unwrap_or(u16::MAX);
    let height = u16::try_from(params.height).unwrap_or(u16::MAX);
    let avc1 = Avc1 {
        visual: Visual {
            data_reference_index: 1,
            width,
            height,
            horizresolution: 72.into(),
            vertresolution: 72.into(),
            frame_count: 1,
            compressor: "".into(),
            depth: 24,
        },
        avcc,
        ..Default::default()
    };
    Ok(Trak {
        tkhd: Tkhd {
            track_id: VIDEO_TRACK_ID,
            enabled: true,
            in_movie: true,
            width: width.into(),
            height: height.into(),
            ..Default::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: TIMESCALE,
                language: "und".into(),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: FourCC::new(b"vide"),
                name: "VideoHandler".into(),
            },
            minf: Minf {
                vmhd: Some(Vmhd::default()),
                dinf: dinf(),
                stbl: empty_stbl(avc1.into()),
                ..Default::default()
            },
        },
        ..Default::default()
    })
}

fn audio_trak(config: &AacConfig) -> Trak {
    let mp4a = Mp4a {
        audio: Audio {
            data_reference_index: 1,
            channel_count: u16::from(config.channels),
            sample_size: 16,
            sample_rate: (config.sample_rate.min(u32::from(u16::MAX)) as u16).into(),
        },
        esds: Esds {
            es_desc: esds::EsDescriptor {
                es_id: AUDIO_TRACK_ID as u16,
                depends_on_es_id: None,
                url: None,
                ocr_es_id: None,
                stream_priority: 0,
                dec_config: esds::DecoderConfig {
                    object_type_indication: 0x40, // MPEG-4 audio
                    stream_type: 0x05,            // audio stream
                    up_stream: 0,
                    dec_specific: Some(esds::DecoderSpecific {
                        profile: 2,
                        freq_index: AacConfig::frequency_index(config.sample_rate).unwrap_or(3),
                        chan_conf: config.channels,
                        raw: config.audio_specific_config.to_vec(),
                    }),
                    ..Default::default()
                },
                sl_config: esds::SLConfig {},
            },
        },
        btrt: None,
        taic: None,
    };
    Trak {
        tkhd: Tkhd {
            track_id: AUDIO_TRACK_ID,
            alternate_group: 1,
            enabled: true,
            in_movie: true,
            volume: 1.into(),
            ..Default::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: config.sample_rate,
                language: "und".into(),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: FourCC::new(b"soun"),
                name: "SoundHandler".into(),
            },
            minf: Minf {
                smhd: Some(Smhd::default()),
                dinf: dinf(),
                stbl: empty_stbl(mp4a.into()),
                ..Default::default()
            },
        },
        ..Default::default()
    }
}

#[derive(Debug, Clone, Copy)]
struct PendingSample {
    time: i64,
    /// Composition offset (track timescale).
    composition: i64,
    size: u32,
    sync: bool,
}

/// The samples of one track waiting for the next fragment, with their data already in
/// MP4 form (length-prefixed NAL units, raw AAC frames).
#[derive(Debug)]
pub struct TrackRun {
    track_id: u32,
    timescale: u32,
    nominal_duration: u32,
    samples: Vec<PendingSample>,
    data: BytesMut,
}

impl TrackRun {
    /// An empty run of `track_id`, with `nominal_duration` (track timescale) used for a
    /// last sample whose successor is not known.
    pub fn new(track_id: u32, timescale: u32, nominal_duration: u32) -> Self {
        TrackRun {
            track_id,
            timescale,
            nominal_duration,
            samples: Vec::new(),
            data: BytesMut::new(),
        }
    }

    /// Converts a 90 kHz timeline position to this track's timescale (rounded).
    pub fn to_track_time(&self, ticks: i64) -> i64 {
        let scaled = i128::from(ticks) * i128::from(self.timescale) * 2 + i128::from(TIMESCALE);
        (scaled.div_euclid(2 * i128::from(TIMESCALE))) as i64
    }

    /// Whether the run holds no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Timeline position (90 kHz) of the first sample, if any.
    pub fn first_time(&self) -> Option<i64> {
        self.samples.first().map(|s| s.time)
    }

    /// Adds an H.264 sample decoded at `dts` and presented `composition` ticks later (90
    /// kHz; 0 without B-frames), NAL units written with 4-byte lengths.
    pub fn push_video(&mut self, dts: i64, composition: i64, keyframe: bool, nalus: &[Bytes]) {
        let size: usize = nalus.iter().map(|n| 4 + n.len()).sum();
        self.data.reserve(size);
        for nalu in nalus {
            self.data.put_u32(nalu.len() as u32);
            self.data.put_slice(nalu);
        }
        let time = self.to_track_time(dts);
        self.samples.push(PendingSample {
            time,
            composition: (self.to_track_time(dts + composition.max(0)) - time).max(0),
            size: size as u32,
            sync: keyframe,
        });
    }

    /// Adds an AAC frame.
    pub fn push_audio(&mut self, pts: i64, frame: &[u8]) {
        self.data.put_slice(frame);
        self.samples.push(PendingSample {
            time: self.to_track_time(pts),
            composition: 0,
            size: frame.len() as u32,
            sync: true,
        });
    }

    fn entries(&self, next_time: Option<i64>) -> Vec<TrunEntry> {
        let count = self.samples.len();
        // Offsets only when some sample needs one (byte-identical runs without B-frames).
        let offsets = self.samples.iter().any(|s| s.composition != 0);
        (0..count)
            .map(|i| {
                let current = self.samples[i].time;
                let next = self
                    .samples
                    .get(i + 1)
                    .map(|s| s.time)
                    .or(next_time.map(|t| self.to_track_time(t)));
                let duration = next
                    .map(|n| n - current)
                    .filter(|d| *d > 0)
                    .map_or(self.nominal_duration, |d| {
                        u32::try_from(d).unwrap_or(self.nominal_duration)
                    });
                TrunEntry {
                    duration: Some(duration),
                    size: Some(self.samples[i].size),
                    flags: Some(if self.samples[i].sync {
                        SYNC_SAMPLE_FLAGS
                    } else {
                        NON_SYNC_SAMPLE_FLAGS
                    }),
                    cts: offsets.then_some(self.samples[i].composition.min(i64::from(i32::MAX))),
                }
            })
            .collect()
    }

    /// Total duration in 90 kHz ticks given the next sample's position (or nominal for
    /// the last).
    pub fn duration_ticks(&self, next_time: Option<i64>) -> i64 {
        let total: i64 = self
            .entries(next_time)
            .iter()
            .map(|e| i64::from(e.duration.unwrap_or(0)))
            .sum();
        (i128::from(total) * i128::from(TIMESCALE) / i128::from(self.timescale.max(1))) as i64
    }
}

/// Writes one fragment (`moof` + `mdat`) holding every non-empty run, and empties them.
/// `next_times` gives, per run, the 90 kHz position of the sample that follows (for the
/// last sample's duration), if known.
pub fn write_fragment(
    sequence_number: u32,
    runs: &mut [(&mut TrackRun, Option<i64>)],
    out: &mut BytesMut,
) -> Result<(), BridgeError> {
    let mut trafs = Vec::new();
    let mut data_len = 0usize;
    for (run, next) in runs.iter() {
        if run.is_empty() {
            continue;
        }
        trafs.push(Traf {
            tfhd: Tfhd {
                track_id: run.track_id,
                default_base_is_moof: true,
                ..Default::default()
            },
            tfdt: Some(Tfdt {
                base_media_decode_time: run.samples[0].time.max(0) as u64,
            }),
            trun: vec![Trun {
                data_offset: Some(0),
                samples: run.entries(*next).into(),
            }],
            ..Default::default()
        });
        data_len += run.data.len();
    }
    let mut moof = Moof {
        mfhd: Mfhd { sequence_number },
        traf: trafs,
    };
    // Encode once to learn the moof size, then fix the data offsets (same size).
    let mut sizing = Vec::new();
    moof.encode(&mut sizing)?;
    let mut offset = sizing.len() + 8;
    let mut data_index = 0;
    for (run, _) in runs.iter() {
        if run.is_empty() {
            continue;
        }
        if let Some(trun) = moof.traf[data_index].trun.first_mut() {
            trun.data_offset = Some(i32::try_from(offset).unwrap_or(i32::MAX));
        }
        offset += run.data.len();
        data_index += 1;
    }
    out.reserve(sizing.len() + 8 + data_len);
    moof.encode(out)?;
    out.put_u32(u32::try_from(8 + data_len).unwrap_or(u32::MAX));
    out.put_slice(b"mdat");
    for (run, _) in runs.iter_mut() {
        out.put_slice(&run.data);
        run.data.clear();
        run.samples.clear();
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::media_unit::test_support::params_640;
    use mp4_atom::{Any, Decode, Mdat, TrunSamples};

    pub(crate) fn decode_all(mut data: &[u8]) -> Vec<Any> {
        let mut atoms = Vec::new();
        while !data.is_empty() {
            atoms.push(Any::decode(&mut data).expect("valid box"));
        }
        atoms
    }

    #[test]
    fn init_segment_has_avcc_and_esds() {
        let params = params_640();
        let aac = AacConfig::lc(48_000, 2).unwrap();
        let init = init_segment(Some(&params), Some(&aac)).unwrap();
        let atoms = decode_all(&init);
        assert_eq!(atoms.len(), 2);
        let Any::Ftyp(ftyp) = &atoms[0] else {
            panic!("ftyp first")
        };
        assert!(ftyp.compatible_brands.contains(&FourCC::new(b"cmfc")));
        let Any::Moov(moov) = &atoms[1] else {
            panic!("moov second")
        };
        assert_eq!(moov.trak.len(), 2);
        assert_eq!(moov.mvex.as_ref().unwrap().trex.len(), 2);
        let video = &moov.trak[0];
        assert_eq!(video.tkhd.track_id, VIDEO_TRACK_ID);
        assert_eq!(video.mdia.mdhd.timescale, 90_000);
        let Codec::Avc1(avc1) = &video.mdia.minf.stbl.stsd.codecs[0] else {
            panic!("avc1")
        };
        assert_eq!((avc1.visual.width, avc1.visual.height), (640, 360));
        assert_eq!(avc1.avcc.sequence_parameter_sets[0], params.sps.to_vec());
        assert_eq!(avc1.avcc.picture_parameter_sets[0], params.pps.to_vec());
        assert_eq!(avc1.avcc.length_size, 4);
        let audio = &moov.trak[1];
        assert_eq!(audio.mdia.mdhd.timescale, 48_000);
        let Codec::Mp4a(mp4a) = &audio.mdia.minf.stbl.stsd.codecs[0] else {
            panic!("mp4a")
        };
        let specific = mp4a.esds.es_desc.dec_config.dec_specific.as_ref().unwrap();
        assert_eq!(specific.raw, vec![0x11, 0x90]);
        assert_eq!(
            (specific.profile, specific.freq_index, specific.chan_conf),
            (2, 3, 2)
        );
        assert_eq!(mp4a.audio.channel_count, 2);

        let video_only = decode_all(&init_segment(Some(&params), None).unwrap());
        let Any::Moov(moov) = &video_only[1] else {
            panic!()
        };
        assert_eq!(moov.trak.len(), 1);
    }

    #[test]
    fn fragment_offsets_point_at_sample_data() {
        let mut video = TrackRun::new(VIDEO_TRACK_ID, 90_000, 3000);
        let mut audio = TrackRun::new(AUDIO_TRACK_ID, 48_000, 1024);
        let nalu = Bytes::from(vec![0x65; 100]);
        video.push_video(90_000, 0, true, std::slice::from_ref(&nalu));
        video.push_video(93_000, 0, false, &[Bytes::from(vec![0x41; 30])]);
        audio.push_audio(90_000, &[0xAA; 10]);
        audio.push_audio(91_920, &[0xBB; 12]);
        let mut out = BytesMut::new();
        write_fragment(
            7,
            &mut [(&mut video, Some(96_000)), (&mut audio, None)],
            &mut out,
        )
        .unwrap();
        assert!(video.is_empty() && audio.is_empty());
        let atoms = decode_all(&out);
        let Any::Moof(moof) = &atoms[0] else {
            panic!("moof")
        };
        let Any::Mdat(Mdat { data }) = &atoms[1] else {
            panic!("mdat")
        };
        assert_eq!(moof.mfhd.sequence_number, 7);
        let moof_len = out.len() - data.len() - 8;
        let v = &moof.traf[0];
        assert_eq!(v.tfdt.as_ref().unwrap().base_media_decode_time, 90_000);
        let TrunSamples::Explicit(entries) = &v.trun[0].samples else {
            panic!("explicit")
        };
        assert_eq!(
            entries
                .iter()
                .map(|e| e.duration.unwrap())
                .collect::<Vec<_>>(),
            [3000, 3000]
        );
        assert_eq!(entries[0].flags, Some(SYNC_SAMPLE_FLAGS));
        assert_eq!(entries[1].flags, Some(NON_SYNC_SAMPLE_FLAGS));
        let offset = v.trun[0].data_offset.unwrap() as usize - moof_len - 8;
        assert_eq!(&data[offset..offset + 4], &[0, 0, 0, 100]);
        assert_eq!(data[offset + 4], 0x65);
        let a = &moof.traf[1];
        assert_eq!(a.tfdt.as_ref().unwrap().base_media_decode_time, 48_000);
        let TrunSamples::Explicit(entries) = &a.trun[0].samples else {
            panic!("explicit")
        };
        assert_eq!(
            entries
                .iter()
                .map(|e| e.duration.unwrap())
                .collect::<Vec<_>>(),
            [1024, 1024]
        );
        let offset = a.trun[0].data_offset.unwrap() as usize - moof_len - 8;
        assert_eq!(&data[offset..offset + 10], &[0xAA; 10]);
        assert_eq!(&data[offset + 10..], &[0xBB; 12]);
    }
}
